using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Transformer;

/// <summary>
/// SwiGLU feed-forward network: down_proj(SiLU(gate_proj(x)) ⊙ up_proj(x)), with biases when <c>mlp_bias</c> is set.
/// gate_proj and up_proj are the two row blocks of one fused <c>gate_up_proj</c> (one matmul); the state dict splits them again.
/// </summary>
public sealed class FeedForward : nn.Module
{
    public FeedForward(int hiddenSize, int intermediateSize, bool bias = false, ScalarType? dtype = null) : base(nameof(FeedForward))
    {
        IntermediateSize = intermediateSize;
        GateUpProj = nn.Linear(hiddenSize, 2L * intermediateSize, hasBias: bias, dtype: dtype);
        GateProj = new FusedProjection(GateUpProj, 0, intermediateSize);
        UpProj = new FusedProjection(GateUpProj, intermediateSize, intermediateSize);
        DownProj = nn.Linear(intermediateSize, hiddenSize, hasBias: bias, dtype: dtype);
        register_module(FusedName, GateUpProj);
        register_module("down_proj", DownProj);
    }

    /// <summary>The fused module's name in <c>named_parameters</c>; <see cref="CausalLanguageModel.StateDict"/> splits it into gate_proj and up_proj.</summary>
    public const string FusedName = "gate_up_proj";

    public int IntermediateSize { get; }
    /// <summary>[gate_proj; up_proj] rows: [2 · intermediate, hidden].</summary>
    public Linear GateUpProj { get; }
    public FusedProjection GateProj { get; }
    public FusedProjection UpProj { get; }
    public Linear DownProj { get; }

    /// <summary>The Hugging Face names and views of the fused module's parameters, in checkpoint order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> SplitParameters()
    {
        foreach (var (name, projection) in new[] { ("gate_proj", GateProj), ("up_proj", UpProj) })
        {
            yield return (name + ".weight", projection.weight);
            if (projection.bias is { } b) yield return (name + ".bias", b);
        }
    }

    public Tensor Forward(Tensor hidden, IFeedForwardHook? hook, int layer)
    {
        if (hook?.ComputeFeedForward(layer, this, hidden) is { } computed) return computed;
        var gateUp = GateUpProj.forward(hidden);
        var gate = gateUp.narrow(-1, 0, IntermediateSize);
        var intermediate = F.silu(gate).mul_(gateUp.narrow(-1, IntermediateSize, IntermediateSize));
        if (hook is not null) intermediate = hook.OnIntermediate(layer, gate, intermediate);
        return DownProj.forward(intermediate);
    }
}
