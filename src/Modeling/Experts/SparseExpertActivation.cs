using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Experts;

/// <summary>
/// Sparse activation of a MoEfied model: every token runs only the <see cref="TopK"/> experts a router picks in
/// each layer. Routers:
/// <list type="bullet">
/// <item><c>centroid</c>: MoEfication's parameter-centre routing, score = h · c_e with c_e the mean gate_proj row of
/// expert e (equal to the mean gate pre-activation of its neurons). It is computed before the FFN, so
/// <see cref="ComputeFeedForward"/> runs only the chosen experts' rows: this is the path whose speed is measured.</item>
/// <item><c>oracle</c>: the experts with the largest summed |activation| for that token, known only after the dense
/// FFN: the upper bound on what a router can keep, with no compute saved.</item>
/// </list>
/// <see cref="OnIntermediate"/> applies the same choice as a per-token mask (the KV-cache decoder's path and the
/// reference the sparse computation is tested against).
/// </summary>
public sealed class SparseExpertActivation : IFeedForwardHook, IDisposable
{
    public const string CentroidRouter = "centroid";
    public const string OracleRouter = "oracle";
    public static IReadOnlyList<string> Routers { get; } = [CentroidRouter, OracleRouter];

    private readonly ExpertPartition _partition;
    private readonly Tensor[] _order;
    private readonly Tensor[] _inverseOrder;
    // Per layer, by expert: gate and up rows [E, n, d], down_proj columns as rows [E, n, d], centroids [d, E].
    private readonly Tensor[] _gate;
    private readonly Tensor[] _up;
    private readonly Tensor[] _down;
    private readonly Tensor[] _centroids;

    public SparseExpertActivation(CausalLanguageModel model, ExpertPartition partition, int topK, string router)
    {
        if (!Routers.Contains(router)) throw new UserInputException($"Unknown router '{router}'; use {string.Join(" or ", Routers)}.");
        if (topK < 1 || topK > partition.Experts)
        {
            throw new UserInputException($"Top-k {topK} is outside 1..{partition.Experts}, the experts per layer.");
        }
        if (partition.Layers != model.Config.NumHiddenLayers || model.Config.IntermediateSizes is not null || partition.IntermediateSize != model.Config.IntermediateSize)
        {
            throw new UserInputException("The expert partition does not fit the model; run 'babel moefy' for this model.");
        }
        (_partition, TopK, Router) = (partition, topK, router);
        var orders = partition.NeuronOrder();
        var (experts, neurons) = (partition.Experts, partition.NeuronsPerExpert);
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        _order = [.. orders.Select(o => tensor(o).MoveToOuterDisposeScope())];
        _inverseOrder = [.. partition.InverseNeuronOrder().Select(o => tensor(o).MoveToOuterDisposeScope())];
        // Per-expert weight copies serve only the centroid router's sparse computation; the oracle masks the dense FFN.
        var copies = router == CentroidRouter ? partition.Layers : 0;
        _gate = new Tensor[copies];
        _up = new Tensor[copies];
        _down = new Tensor[copies];
        _centroids = new Tensor[copies];
        for (var layer = 0; layer < copies; layer++)
        {
            var mlp = model.Layers[layer].Mlp;
            var hidden = model.Config.HiddenSize;
            _gate[layer] = mlp.GateProj.weight!.index_select(0, _order[layer]).reshape(experts, neurons, hidden).contiguous().MoveToOuterDisposeScope();
            _up[layer] = mlp.UpProj.weight!.index_select(0, _order[layer]).reshape(experts, neurons, hidden).contiguous().MoveToOuterDisposeScope();
            _down[layer] = mlp.DownProj.weight!.t().index_select(0, _order[layer]).reshape(experts, neurons, hidden).contiguous().MoveToOuterDisposeScope();
            _centroids[layer] = _gate[layer].mean([1]).t().contiguous().MoveToOuterDisposeScope();
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
        var scores = Router == OracleRouter
            ? grouped.abs().sum([-1])
            : gate.index_select(-1, order).reshape(shape).mean([-1]);
        var chosen = scores.topk(TopK, dim: -1).indexes;
        var keep = zeros_like(scores).scatter_(-1, chosen, ones(chosen.shape, scores.dtype, scores.device));
        return (grouped * keep.unsqueeze(-1)).reshape([.. leading, _partition.IntermediateSize]).index_select(-1, _inverseOrder[layer].to(intermediate.device));
    }

    /// <summary>Centroid routing computed sparsely: per expert, only the tokens routed to it go through its rows.</summary>
    public Tensor? ComputeFeedForward(int layer, FeedForward feedForward, Tensor hidden)
    {
        // The sparse path multiplies weights only; a biased FFN (mlp_bias) takes the dense, masked path.
        if (Router != CentroidRouter || feedForward.GateProj.bias is not null) return null;
        var x = hidden.reshape(-1, hidden.shape[^1]);
        var chosen = x.mm(_centroids[layer]).topk(TopK, dim: -1).indexes;
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
        foreach (var t in _order.Concat(_inverseOrder).Concat(_gate).Concat(_up).Concat(_down).Concat(_centroids)) t.Dispose();
    }
}
