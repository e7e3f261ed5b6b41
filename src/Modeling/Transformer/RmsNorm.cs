using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// Root-mean-square layer normalisation with a learned gain (<c>weight</c>). A bfloat16 or float16 input is normalised in
/// float32 and rounded back before the gain, as transformers' LlamaRMSNorm does.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _weight;
    // Held for the module's life (see HeldScalars): a temporary per call can be freed by another thread's collection mid-call.
    private readonly Scalar _epsilon;

    public RmsNorm(long size, double epsilon, ScalarType? dtype = null) : base(nameof(RmsNorm))
    {
        Epsilon = epsilon;
        _epsilon = epsilon.ToScalar();
        _weight = new Parameter(ones(size, dtype ?? ScalarType.Float32));
        register_parameter("weight", _weight);
    }

    public double Epsilon { get; }
    public Parameter Weight => _weight;

    public override Tensor forward(Tensor input)
    {
        if (input.dtype == ScalarType.Float32) return Normalize(input, _epsilon).mul_(_weight);
        using var wide = input.to_type(ScalarType.Float32);
        using var normalized = Normalize(wide, _epsilon);
        return normalized.to_type(input.dtype).mul_(_weight);
    }

    /// <summary>x / sqrt(mean(x²) + ε) over the last dimension, without the gain.</summary>
    public static Tensor Normalize(Tensor input, Scalar epsilon)
    {
        using var scale = input.square().mean([-1], keepdim: true).add_(epsilon).rsqrt_();
        return input * scale;
    }
}
