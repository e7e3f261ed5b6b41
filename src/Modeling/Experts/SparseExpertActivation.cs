using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Experts;

/// <summary>
/// Sparse activation of a MoEfied model: every token runs only <see cref="TopK"/> experts per layer. Routers:
/// <list type="bullet">
/// <item><c>centroid</c>: the partition's centroids. MoEfication clusters each neuron's L2-normalised
/// [gate_proj row ‖ up_proj row]; the centroid of expert e is the mean of its neurons' points, split into its gate half
/// c_g,e and up half c_u,e. The score of e for the FFN input h is |SiLU(h·c_g,e) · (h·c_u,e)|, the activation of the
/// expert's "centroid neuron". MoEfication's parameter-centre selection is for ReLU FFNs (the normalised input's
/// distance to the centre of normalised W1 rows); this SwiGLU reading is Babel's own.</item>
/// <item><c>frequency</c>: "leveraging the differences in expert activation frequencies to guide sparse activation"
/// (Unraveling Babel): each language keeps its own <see cref="TopK"/> most frequently activated experts per layer, from
/// the profiling run, for every token of that language: a static mask, computed as a smaller FFN.</item>
/// <item><c>oracle</c>: the experts with the largest summed |activation| for that token, known only after the dense
/// FFN: the upper bound on what a per-token router can keep, with no compute saved.</item>
/// <item><c>gate-mean</c>: Babel's earlier router, h·(mean raw gate_proj row of e) = the mean gate pre-activation of
/// e's neurons; kept for comparison.</item>
/// </list>
/// The centroid, gate-mean and frequency routers choose before the FFN, so <see cref="ComputeFeedForward"/> runs only
/// the chosen experts' rows: this is the path whose speed is measured. <see cref="OnIntermediate"/> applies the same
/// choice as a mask on the dense FFN (the KV-cache decoder's path and the path of a biased FFN).
/// </summary>
public sealed class SparseExpertActivation : IFeedForwardHook, IDisposable
{
    public const string CentroidRouter = "centroid";
    public const string FrequencyRouter = "frequency";
    public const string OracleRouter = "oracle";
    public const string GateMeanRouter = "gate-mean";
    /// <summary>Every router <see cref="SparseExpertActivation"/> accepts.</summary>
    public static IReadOnlyList<string> Routers { get; } = [CentroidRouter, FrequencyRouter, OracleRouter, GateMeanRouter];
    /// <summary>What <c>babel sparse</c> scores by default (frequency only with a profiling run).</summary>
    public static IReadOnlyList<string> DefaultRouters { get; } = [CentroidRouter, FrequencyRouter, OracleRouter];

    private readonly ExpertPartition _partition;
    private readonly Tensor[] _order;
    private readonly Tensor[] _inverseOrder;
    // Per-token routers computed sparsely: per layer, by expert, gate and up rows [E, n, d] and down_proj columns as rows [E, n, d].
    private readonly Tensor[] _gate = [];
    private readonly Tensor[] _up = [];
    private readonly Tensor[] _down = [];
    // Router weights [d, E]: the centroid's gate and up halves, or the mean raw gate row (gate-mean, in _centroidGate).
    private readonly Tensor[] _centroidGate = [];
    private readonly Tensor[] _centroidUp = [];
    // Centroid scores from the dense FFN's projections: 1 / ‖[gate row ‖ up row]‖ per neuron [E, n], and the biases [E, n].
    private readonly Tensor[] _inverseNorm = [];
    private readonly Tensor?[] _gateBias = [];
    private readonly Tensor?[] _upBias = [];
    // Frequency router: the kept experts' gate and up rows [k·n, d], down_proj columns [d, k·n], and the 0/1 mask [E, 1].
    private readonly Tensor[] _keptGate = [];
    private readonly Tensor[] _keptUp = [];
    private readonly Tensor[] _keptDown = [];
    private readonly Tensor[] _keep = [];

    /// <param name="model">The dense model the partition was made for.</param>
    /// <param name="partition">Its expert partition (experts.json).</param>
    /// <param name="topK">Experts each token runs per layer.</param>
    /// <param name="router">One of <see cref="Routers"/>.</param>
    /// <param name="pruned">For the frequency router only: pruned[layer][expert], exactly E − <paramref name="topK"/> true per layer.</param>
    public SparseExpertActivation(CausalLanguageModel model, ExpertPartition partition, int topK, string router, bool[][]? pruned = null)
    {
        if (!Routers.Contains(router)) throw new UserInputException($"Unknown router '{router}'; use {string.Join(", ", Routers)}.");
        if (topK < 1 || topK > partition.Experts)
        {
            throw new UserInputException($"Top-k {topK} is outside 1..{partition.Experts}, the experts per layer.");
        }
        if (partition.Layers != model.Config.NumHiddenLayers || model.Config.IntermediateSizes is not null || partition.IntermediateSize != model.Config.IntermediateSize)
        {
            throw new UserInputException("The expert partition does not fit the model; run 'babel moefy' for this model.");
        }
        if ((router == FrequencyRouter) != (pruned is not null)) throw new ArgumentException("Only the frequency router takes a static mask, and it needs one.", nameof(pruned));
        if (pruned is not null && (pruned.Length != partition.Layers || pruned.Any(l => l.Length != partition.Experts || l.Count(p => !p) != topK)))
        {
            throw new ArgumentException($"The frequency router's mask must keep {topK} of {partition.Experts} experts in each of {partition.Layers} layers.", nameof(pruned));
        }
        (_partition, TopK, Router) = (partition, topK, router);
        var (experts, neurons, layers) = (partition.Experts, partition.NeuronsPerExpert, partition.Layers);
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        _order = [.. partition.NeuronOrder().Select(o => tensor(o).MoveToOuterDisposeScope())];
        _inverseOrder = [.. partition.InverseNeuronOrder().Select(o => tensor(o).MoveToOuterDisposeScope())];
        Tensor Keep(Tensor t) => t.contiguous().MoveToOuterDisposeScope();
        Tensor ByExpert(Tensor rows, int layer) => rows.index_select(0, _order[layer]).reshape(experts, neurons, -1);
        if (router is CentroidRouter or GateMeanRouter)
        {
            (_gate, _up, _down, _centroidGate) = (new Tensor[layers], new Tensor[layers], new Tensor[layers], new Tensor[layers]);
            if (router == CentroidRouter) (_centroidUp, _inverseNorm, _gateBias, _upBias) = (new Tensor[layers], new Tensor[layers], new Tensor?[layers], new Tensor?[layers]);
            for (var layer = 0; layer < layers; layer++)
            {
                var mlp = model.Layers[layer].Mlp;
                var (gate, up) = (mlp.GateProj.weight!, mlp.UpProj.weight!);
                _gate[layer] = Keep(ByExpert(gate, layer));
                _up[layer] = Keep(ByExpert(up, layer));
                _down[layer] = Keep(ByExpert(mlp.DownProj.weight!.t(), layer));
                if (router == GateMeanRouter)
                {
                    _centroidGate[layer] = Keep(_gate[layer].mean([1]).t());
                    continue;
                }
                // The very points k-means clustered (MoEfication.LayerRows), averaged per expert.
                var centroids = ByExpert(MoEfication.LayerRows(model, layer), layer).mean([1]).to_type(gate.dtype);
                var hidden = gate.shape[1];
                _centroidGate[layer] = Keep(centroids.narrow(1, 0, hidden).t());
                _centroidUp[layer] = Keep(centroids.narrow(1, hidden, hidden).t());
                var norms = cat([gate, up], dim: 1).to_type(ScalarType.Float32).norm(1).clamp_min(1e-12);
                _inverseNorm[layer] = Keep(ByExpert(norms.reciprocal().unsqueeze(1), layer).squeeze(-1).to_type(gate.dtype));
                _gateBias[layer] = mlp.GateProj.bias is { } gb ? Keep(ByExpert(gb.unsqueeze(1), layer).squeeze(-1)) : null;
                _upBias[layer] = mlp.UpProj.bias is { } ub ? Keep(ByExpert(ub.unsqueeze(1), layer).squeeze(-1)) : null;
            }
        }
        if (pruned is not null)
        {
            (_keptGate, _keptUp, _keptDown, _keep) = (new Tensor[layers], new Tensor[layers], new Tensor[layers], new Tensor[layers]);
            for (var layer = 0; layer < layers; layer++)
            {
                var mlp = model.Layers[layer].Mlp;
                var expertOf = partition.ExpertOfNeuron[layer];
                var kept = tensor(Enumerable.Range(0, partition.IntermediateSize).Where(n => !pruned[layer][expertOf[n]]).Select(n => (long)n).ToArray());
                _keptGate[layer] = Keep(mlp.GateProj.weight!.index_select(0, kept));
                _keptUp[layer] = Keep(mlp.UpProj.weight!.index_select(0, kept));
                _keptDown[layer] = Keep(mlp.DownProj.weight!.index_select(1, kept));
                _keep[layer] = Keep(tensor(pruned[layer].Select(p => p ? 0f : 1f).ToArray()).reshape(experts, 1));
            }
        }
    }

    public int TopK { get; }
    public string Router { get; }

    /// <summary>The fraction of FFN neuron computation a token runs: K / E.</summary>
    public double ComputeFraction => (double)TopK / _partition.Experts;

    public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
    {
        var leading = intermediate.shape[..^1];
        var shape = (long[])[.. leading, _partition.Experts, _partition.NeuronsPerExpert];
        var order = _order[layer].to(intermediate.device);
        var grouped = intermediate.index_select(-1, order).reshape(shape);
        Tensor keep;
        if (Router == FrequencyRouter)
        {
            keep = _keep[layer].to(intermediate.dtype, intermediate.device);
        }
        else
        {
            var scores = Router switch
            {
                OracleRouter => grouped.abs().sum([-1]),
                GateMeanRouter => gate.index_select(-1, order).reshape(shape).mean([-1]),
                _ => CentroidScores(layer, gate.index_select(-1, order).reshape(shape), grouped),
            };
            var chosen = scores.topk(TopK, dim: -1).indexes;
            keep = zeros_like(scores).scatter_(-1, chosen, ones(chosen.shape, scores.dtype, scores.device)).unsqueeze(-1);
        }
        return (grouped * keep).reshape([.. leading, _partition.IntermediateSize]).index_select(-1, _inverseOrder[layer].to(intermediate.device));
    }

    /// <summary>
    /// The centroid scores from the dense FFN's gate pre-activation and SiLU(gate)·up, by expert [.., E, n]: h·c_g,e is the mean
    /// over e's neurons of (gate − bias) / ‖[g ‖ u]‖, and likewise for up, recovered as intermediate / SiLU(gate) (a neuron
    /// whose SiLU is exactly 0 adds 0 to h·c_u,e here).
    /// </summary>
    private Tensor CentroidScores(int layer, Tensor gate, Tensor intermediate)
    {
        var device = intermediate.device;
        var silu = F.silu(gate);
        var up = where(silu.ne(0), intermediate / silu, zeros_like(silu));
        if (_gateBias[layer] is { } gb) gate = gate - gb.to(device);
        if (_upBias[layer] is { } ub) up = up - ub.to(device);
        var inverse = _inverseNorm[layer].to(gate.dtype, device);
        return (F.silu((gate * inverse).mean([-1])) * (up * inverse).mean([-1])).abs();
    }

    /// <summary>Routing computed sparsely: per expert, only the tokens routed to it go through its rows; the frequency router runs the kept rows only.</summary>
    public Tensor? ComputeFeedForward(int layer, FeedForward feedForward, Tensor hidden)
    {
        // The sparse path multiplies weights only; a biased FFN (mlp_bias) takes the dense, masked path.
        if (Router == OracleRouter || feedForward.GateProj.bias is not null) return null;
        var x = hidden.reshape(-1, hidden.shape[^1]);
        if (Router == FrequencyRouter)
        {
            var kept = F.silu(x.mm(_keptGate[layer].t())) * x.mm(_keptUp[layer].t());
            return kept.mm(_keptDown[layer].t()).reshape(hidden.shape);
        }
        var scores = Router == GateMeanRouter
            ? x.mm(_centroidGate[layer])
            : (F.silu(x.mm(_centroidGate[layer])) * x.mm(_centroidUp[layer])).abs();
        var chosen = scores.topk(TopK, dim: -1).indexes;
        var output = zeros_like(x);
        for (var expert = 0; expert < _partition.Experts; expert++)
        {
            var tokens = chosen.eq(expert).any(-1).nonzero().squeeze(-1);
            if (tokens.shape[0] == 0) continue;
            var routed = x.index_select(0, tokens);
            var activation = F.silu(routed.mm(_gate[layer][expert].t())) * routed.mm(_up[layer][expert].t());
            output.index_add_(0, tokens, activation.mm(_down[layer][expert]), 1.0);
        }
        return output.reshape(hidden.shape);
    }

    public void Dispose()
    {
        foreach (var t in _order.Concat(_inverseOrder).Concat(_gate).Concat(_up).Concat(_down).Concat(_centroidGate).Concat(_centroidUp).Concat(_inverseNorm)
            .Concat(_gateBias.OfType<Tensor>()).Concat(_upBias.OfType<Tensor>()).Concat(_keptGate).Concat(_keptUp).Concat(_keptDown).Concat(_keep)) t.Dispose();
    }
}
