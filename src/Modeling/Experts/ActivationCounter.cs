using Babel.Modeling.Transformer;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Experts;

/// <summary>
/// Counts, per layer and expert, how many tokens activate each expert under an <see cref="ActivationRule"/>, while the
/// model runs: attach it as the forward's <see cref="IFeedForwardHook"/> after <see cref="SetTokenMask"/>. The counts stay
/// on the device and are updated there (no host copy or sync per layer); <see cref="Counts"/> copies them once.
/// On a model grouped by its partition (<see cref="ExpertLayout.GroupByExpert"/>, a contiguous partition) an expert's neurons
/// are a slice of the intermediate vector: on the CPU the rule is applied in one vectorised pass over the activations where
/// they lie (<see cref="ContiguousExpertCounts"/>), counts kept on the host; on another device per-expert sums are one
/// reduction over a [tokens, experts, neurons] view (no copy). For any other partition they are a matmul with a one-hot [experts, neurons] assignment per layer rather than a
/// gather by <see cref="ExpertPartition.NeuronOrder"/> and a sum: on CPU the gather alone cost ~12 ms per layer at 2048
/// tokens × 1536 neurons, the matmul ~1–3 ms (see docs/benchmarks.md).
/// One counter per model replica; not thread-safe.
/// </summary>
public sealed class ActivationCounter : IFeedForwardHook, IDisposable
{
    private readonly ExpertPartition _partition;
    private readonly Device _device;
    private readonly Tensor _counts;
    private readonly Tensor[] _assignment;
    private readonly bool _contiguous;
    private readonly long[]? _hostCounts;
    private bool[] _hostMask = [];
    private readonly int _topK;
    private readonly long _minimumPositive;
    private Tensor? _tokenMask;
    private Tensor? _tokenMaskPerChoice;

    public ActivationCounter(ExpertPartition partition, ActivationRule rule, Device device) : this(partition, rule, device, countOnHost: true)
    {
    }

    /// <summary>
    /// As the public constructor; <paramref name="countOnHost"/> false keeps a contiguous partition's counts on the device
    /// even on the CPU (the path other devices take), so that tests can check that path too.
    /// </summary>
    internal ActivationCounter(ExpertPartition partition, ActivationRule rule, Device device, bool countOnHost)
    {
        Rule = rule.CheckFits(partition);
        _partition = partition;
        _device = device;
        switch (rule)
        {
            case ActivationRule.TopK topK:
                _topK = topK.K;
                break;
            case ActivationRule.Threshold threshold:
                _minimumPositive = threshold.MinimumPositive(partition.NeuronsPerExpert);
                break;
            default:
                throw new ArgumentException($"Unknown activation rule {rule}.", nameof(rule));
        }
        // Detached from any caller's dispose scope: these live as long as the counter.
        _counts = zeros([partition.Layers, partition.Experts], ScalarType.Int64, device).DetachFromDisposeScope();
        _contiguous = partition.IsContiguous;
        _assignment = _contiguous ? [] : [.. partition.ExpertOfNeuron.Select(layer => Assignment(layer, partition.Experts, device))];
        if (countOnHost && _contiguous && device.type == TorchSharp.DeviceType.CPU) _hostCounts = new long[partition.Layers * partition.Experts];
    }

    public ActivationRule Rule { get; }

    /// <summary>Tokens counted so far: the sum of every forward's token mask.</summary>
    public long Tokens { get; private set; }

    /// <summary>
    /// Which tokens of the next forward to count, [batch, tokens] (bool or 0/1): pads are never counted; the caller decides
    /// about BOS. Call before each forward; the mask stays until replaced.
    /// </summary>
    public void SetTokenMask(Tensor mask)
    {
        if (mask.dim() != 2) throw new ArgumentException($"The token mask must be [batch, tokens], not [{string.Join(", ", mask.shape)}].", nameof(mask));
        ReleaseMask();
        // The mask outlives the caller's per-batch scope until replaced, so it is detached from every scope.
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var flat = mask.reshape(-1).to(ScalarType.Int64, _device).ne(0).to(ScalarType.Int64);
        Tokens += flat.sum().item<long>();
        _tokenMask = flat.unsqueeze(1).DetachFromDisposeScope();
        if (_hostCounts is not null)
        {
            using var host = flat.to(ScalarType.Bool).cpu();
            _hostMask = host.data<bool>().ToArray();
        }
        // topk adds each token's mask once per chosen expert: the mask repeated K times, in the order of topk's indices.
        else if (_topK > 0) _tokenMaskPerChoice = flat.unsqueeze(1).expand(flat.shape[0], _topK).reshape(-1).DetachFromDisposeScope();
    }

    public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
    {
        var mask = _tokenMask ?? throw new InvalidOperationException("Call SetTokenMask before each forward with an ActivationCounter.");
        var tokens = mask.shape[0];
        var neurons = intermediate.shape[^1];
        if (intermediate.numel() != tokens * neurons)
        {
            throw new InvalidOperationException($"The token mask covers {tokens} tokens but layer {layer}'s activations are [{string.Join(", ", intermediate.shape)}]; set the mask for this forward.");
        }
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var (experts, size) = (_partition.Experts, _partition.NeuronsPerExpert);
        if (_hostCounts is not null)
        {
            var layerCounts = _hostCounts.AsSpan(layer * experts, experts);
            if (_topK > 0) ContiguousExpertCounts.CountTopK(intermediate, _hostMask, experts, size, _topK, layerCounts);
            else ContiguousExpertCounts.CountThreshold(gate, _hostMask, experts, size, _minimumPositive, layerCounts);
            return intermediate;
        }
        var counts = _counts[layer];
        if (_topK > 0)
        {
            // Per expert, the L1 norm of its activations; topk's order does not matter, each choice adds its token's mask.
            var l1 = _contiguous
                ? intermediate.reshape(tokens, experts, size).abs().sum(-1, type: ScalarType.Float32)
                : F.linear(intermediate.reshape(tokens, neurons).abs().to(ScalarType.Float32), _assignment[layer]);
            var chosen = l1.topk(_topK, dim: -1, largest: true, sorted: false).indexes.reshape(-1);
            counts.index_add_(0, chosen, _tokenMaskPerChoice!, 1);
        }
        else
        {
            // Positive gates per expert. Grouped: one comparison and one sum over the expert's slice of the gate, read where it
            // lies (a view of the fused gate/up rows). Otherwise 1 for a positive gate, else 0, by clamp then sign (heaviside's
            // CPU kernel is scalar), summed per expert by the assignment matmul; counts are small integers, exact in float32.
            var positive = _contiguous
                ? gate.reshape(tokens, experts, size).gt(0).sum(-1, type: ScalarType.Int32)
                : F.linear(gate.clamp_min(0).sign_().reshape(tokens, neurons).to(ScalarType.Float32), _assignment[layer]);
            counts.add_(positive.ge((double)_minimumPositive).mul(mask).sum(dim: 0));
        }
        return intermediate;
    }

    /// <summary>The counts so far, [layer][expert]: one copy from the device.</summary>
    public long[][] Counts()
    {
        long[] flat;
        if (_hostCounts is not null) flat = _hostCounts;
        else
        {
            using var host = _counts.cpu();
            flat = host.data<long>().ToArray();
        }
        return [.. Enumerable.Range(0, _partition.Layers).Select(layer => flat.AsSpan(layer * _partition.Experts, _partition.Experts).ToArray())];
    }

    public void Reset()
    {
        _counts.zero_();
        if (_hostCounts is not null) Array.Clear(_hostCounts);
        Tokens = 0;
    }

    public void Dispose()
    {
        ReleaseMask();
        _counts.Dispose();
        foreach (var assignment in _assignment) assignment.Dispose();
    }

    /// <summary>[experts, neurons] float32: row e is 1 at the neurons of expert e, so linear(x, it) sums x per expert.</summary>
    private static Tensor Assignment(int[] expertOfNeuron, int experts, Device device)
    {
        var oneHot = new float[experts * expertOfNeuron.Length];
        for (var neuron = 0; neuron < expertOfNeuron.Length; neuron++) oneHot[expertOfNeuron[neuron] * expertOfNeuron.Length + neuron] = 1;
        return tensor(oneHot, [experts, expertOfNeuron.Length], device: device).DetachFromDisposeScope();
    }

    private void ReleaseMask()
    {
        _tokenMask?.Dispose();
        _tokenMaskPerChoice?.Dispose();
        _tokenMask = null;
        _tokenMaskPerChoice = null;
    }
}
