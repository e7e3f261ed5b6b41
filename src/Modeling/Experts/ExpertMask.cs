using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// The MoE view of a dense FFN: each layer's intermediate activations are gathered by expert into
/// [.., experts, neurons per expert], multiplied by that layer's 0/1 expert mask and scattered back.
/// With every expert on it computes the dense forward; switching experts off is expert pruning.
/// </summary>
public sealed class ExpertMask : IFeedForwardHook, IDisposable
{
    private readonly ExpertPartition _partition;
    private readonly Tensor[] _order;
    private readonly Tensor[] _inverseOrder;
    private readonly Tensor[] _masks;

    /// <param name="partition">The model's expert partition.</param>
    /// <param name="mask">[layers, experts]: 1 keeps an expert, 0 switches it off.</param>
    public ExpertMask(ExpertPartition partition, Tensor mask)
    {
        if (mask.dim() != 2 || mask.shape[0] != partition.Layers || mask.shape[1] != partition.Experts)
        {
            throw new ArgumentException($"The expert mask must be [{partition.Layers}, {partition.Experts}], got [{string.Join(", ", mask.shape)}].", nameof(mask));
        }
        _partition = partition;
        var order = partition.NeuronOrder();
        // Kept for the hook's lifetime, outside any dispose scope of the caller.
        _order = [.. order.Select(o => tensor(o).DetachFromDisposeScope())];
        _inverseOrder = [.. partition.InverseNeuronOrder().Select(o => tensor(o).DetachFromDisposeScope())];
        _masks = [.. Enumerable.Range(0, partition.Layers).Select(layer => mask[layer].detach().to_type(ScalarType.Float32).reshape(partition.Experts, 1).clone().DetachFromDisposeScope())];
    }

    /// <summary>Every expert active: the MoE computation that must equal the dense forward.</summary>
    public static ExpertMask AllActive(ExpertPartition partition)
    {
        using var all = ones(partition.Layers, partition.Experts);
        return new ExpertMask(partition, all);
    }

    public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
    {
        var device = intermediate.device;
        var leading = intermediate.shape[..^1];
        var grouped = intermediate.index_select(-1, _order[layer].to(device))
            .reshape([.. leading, _partition.Experts, _partition.NeuronsPerExpert]);
        var masked = grouped * _masks[layer].to(intermediate.dtype, device);
        return masked.reshape([.. leading, _partition.IntermediateSize]).index_select(-1, _inverseOrder[layer].to(device));
    }

    public void Dispose()
    {
        foreach (var t in _order.Concat(_inverseOrder).Concat(_masks)) t.Dispose();
    }
}
