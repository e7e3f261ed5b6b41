using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Transformer;

/// <summary>SwiGLU feed-forward network: down_proj(SiLU(gate_proj(x)) ⊙ up_proj(x)), with biases when <c>mlp_bias</c> is set.</summary>
public sealed class FeedForward : nn.Module
{
    public FeedForward(int hiddenSize, int intermediateSize, bool bias = false, ScalarType? dtype = null) : base(nameof(FeedForward))
    {
        IntermediateSize = intermediateSize;
        GateProj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, dtype: dtype);
        UpProj = nn.Linear(hiddenSize, intermediateSize, hasBias: bias, dtype: dtype);
        DownProj = nn.Linear(intermediateSize, hiddenSize, hasBias: bias, dtype: dtype);
        register_module("gate_proj", GateProj);
        register_module("up_proj", UpProj);
        register_module("down_proj", DownProj);
    }

    public int IntermediateSize { get; }
    public Linear GateProj { get; }
    public Linear UpProj { get; }
    public Linear DownProj { get; }

    public Tensor Forward(Tensor hidden, IFeedForwardHook? hook, int layer)
    {
        if (hook?.ComputeFeedForward(layer, this, hidden) is { } computed) return computed;
        var gate = GateProj.forward(hidden);
        var intermediate = F.silu(gate) * UpProj.forward(hidden);
        if (hook is not null) intermediate = hook.OnIntermediate(layer, gate, intermediate);
        return DownProj.forward(intermediate);
    }
}
