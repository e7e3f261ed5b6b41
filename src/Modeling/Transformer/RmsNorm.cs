using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>Root-mean-square layer normalisation with a learned gain (<c>weight</c>).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _weight;

    public RmsNorm(long size, double epsilon) : base(nameof(RmsNorm))
    {
        Epsilon = epsilon;
        _weight = new Parameter(ones(size));
        register_parameter("weight", _weight);
    }

    public double Epsilon { get; }
    public Parameter Weight => _weight;

    public override Tensor forward(Tensor input) => Normalize(input, Epsilon).mul_(_weight);

    /// <summary>x / sqrt(mean(x²) + ε) over the last dimension, without the gain.</summary>
    public static Tensor Normalize(Tensor input, double epsilon)
    {
        using var scale = input.square().mean([-1], keepdim: true).add_(epsilon).rsqrt_();
        return input * scale;
    }
}
