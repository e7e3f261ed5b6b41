using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// The identity on a decoder layer's input whose backward reports that layer as done. libtorch differentiates in reverse
/// order of the forward and accumulates a parameter's gradient as soon as its last contribution is computed (before any
/// other ready node), so when the gradient reaches a layer's input, that layer's parameters and those of every layer
/// above it hold their complete gradients.
/// </summary>
internal sealed class GradientReadyMarker : autograd.SingleTensorFunction<GradientReadyMarker>
{
    private const string LayerKey = "layer";
    private const string ReadyKey = "ready";

    public override string Name => nameof(GradientReadyMarker);

    /// <summary><paramref name="input"/> unchanged, with <paramref name="ready"/>(<paramref name="layer"/>) called when its gradient is computed.</summary>
    public static Tensor Mark(Tensor input, int layer, Action<int> ready) => apply(input, layer, ready);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data(LayerKey, vars[1]);
        ctx.save_data(ReadyKey, vars[2]);
        var input = (Tensor)vars[0];
        return input.view_as(input);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        // Runs inside libtorch's backward: the callback must not throw (it catches its own failures).
        ((Action<int>)ctx.get_data(ReadyKey))((int)ctx.get_data(LayerKey));
        return [grad_output, null!, null!];
    }
}
