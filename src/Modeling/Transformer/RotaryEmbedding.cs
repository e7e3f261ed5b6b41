using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half convention: dimension i pairs with i + head_dim/2.
/// Cosine and sine tables are computed once for every position up to the model's maximum, with the frequencies and
/// the cos/sin factor of the config's <see cref="RopeScaling"/> (transformers' <c>modeling_rope_utils</c>). Dynamic
/// (NTK) scaling depends on the sequence length, so beyond the original context its angles are computed per call.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly double _theta;
    private readonly RopeScaling? _scaling;

    public RotaryEmbedding(int headDim, int maxPositions, double theta, RopeScaling? scaling = null)
    {
        HeadDim = headDim;
        MaxPositions = maxPositions;
        _theta = theta;
        _scaling = scaling;
        OriginalContext = scaling?.OriginalContext(maxPositions) ?? maxPositions;
        AttentionFactor = AttentionFactorOf(scaling, maxPositions);
        using var scope = NewDisposeScope();
        var (cos, sin) = Angles(arange(maxPositions, dtype: ScalarType.Float64), InverseFrequencies(headDim, theta, scaling, maxPositions, 0));
        Cos = cos.MoveToOuterDisposeScope();
        Sin = sin.MoveToOuterDisposeScope();
    }

    public int HeadDim { get; }
    public int MaxPositions { get; }
    /// <summary>The pretrained context the scaling is relative to (max positions without scaling).</summary>
    public int OriginalContext { get; }
    /// <summary>The factor cos and sin are multiplied by (yarn's attention scaling; 1 otherwise).</summary>
    public double AttentionFactor { get; }
    /// <summary>True when the angles depend on the sequence length (dynamic NTK scaling).</summary>
    public bool IsDynamic => _scaling?.Type == RopeScaling.Dynamic;
    /// <summary>[max_positions, head_dim].</summary>
    public Tensor Cos { get; }
    /// <summary>[max_positions, head_dim].</summary>
    public Tensor Sin { get; }

    /// <summary>
    /// The head_dim/2 inverse frequencies of <paramref name="scaling"/> for a sequence of <paramref name="sequenceLength"/>
    /// tokens (only dynamic scaling reads it), in float64 so long contexts keep their angles exact.
    /// </summary>
    public static double[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling, int maxPositions, long sequenceLength)
    {
        var half = headDim / 2;
        var original = scaling?.OriginalContext(maxPositions) ?? maxPositions;
        var factor = scaling?.Factor ?? 1.0;
        var baseTheta = theta;
        if (scaling?.Type == RopeScaling.Dynamic)
        {
            // NTK: a larger base for a sequence longer than the pretrained context.
            var length = Math.Max(sequenceLength, original);
            baseTheta = theta * Math.Pow(factor * length / original - (factor - 1), headDim / (headDim - 2.0));
        }
        var plain = new double[half];
        for (var i = 0; i < half; i++) plain[i] = 1.0 / Math.Pow(baseTheta, 2.0 * i / headDim);
        switch (scaling?.Type)
        {
            case RopeScaling.Linear:
                return [.. plain.Select(f => f / factor)];
            case RopeScaling.Llama3:
            {
                double low = scaling.LowFreqFactor!.Value, high = scaling.HighFreqFactor!.Value;
                return [.. plain.Select(f =>
                {
                    var wavelength = 2 * Math.PI / f;
                    if (wavelength < original / high) return f;
                    if (wavelength > original / low) return f / factor;
                    var smooth = (original / wavelength - low) / (high - low);
                    return (1 - smooth) * f / factor + smooth * f;
                })];
            }
            case RopeScaling.Yarn:
            {
                double Dimension(double rotations) => headDim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
                double lowDim = Dimension(scaling.BetaFast ?? 32), highDim = Dimension(scaling.BetaSlow ?? 1);
                if (scaling.Truncate) (lowDim, highDim) = (Math.Floor(lowDim), Math.Ceiling(highDim));
                (lowDim, highDim) = (Math.Max(lowDim, 0), Math.Min(highDim, headDim - 1));
                if (lowDim == highDim) highDim += 0.001;
                var result = new double[half];
                for (var i = 0; i < half; i++)
                {
                    // Fast dimensions keep their frequency (extrapolate), slow ones are divided by the factor (interpolate).
                    var interpolate = Math.Clamp((i - lowDim) / (highDim - lowDim), 0, 1);
                    result[i] = plain[i] / factor * interpolate + plain[i] * (1 - interpolate);
                }
                return result;
            }
            default:
                return plain;
        }
    }

    /// <summary>The factor yarn applies to cos and sin: attention_factor, else from mscale/mscale_all_dim, else 0.1·ln(factor) + 1.</summary>
    public static double AttentionFactorOf(RopeScaling? scaling, int maxPositions)
    {
        if (scaling?.Type != RopeScaling.Yarn) return 1.0;
        if (scaling.AttentionFactor is { } given) return given;
        static double Magnitude(double scale, double mscale) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;
        return scaling is { Mscale: { } m and not 0, MscaleAllDim: { } all and not 0 }
            ? Magnitude(scaling.Factor, m) / Magnitude(scaling.Factor, all)
            : Magnitude(scaling.Factor, 1);
    }

    /// <summary>Rotates <paramref name="x"/> [batch, heads, tokens, head_dim] by per-row positions given as gathered tables [batch, 1, tokens, head_dim].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        var half = x.shape[^1] / 2;
        using var secondHalf = x.narrow(-1, half, half).neg();
        using var rotated = cat([secondHalf, x.narrow(-1, 0, half)], dim: -1);
        return (x * cos).add(rotated * sin, HeldScalars.One);
    }

    /// <summary>
    /// The tables for <paramref name="positions"/> [batch, tokens] as [batch, 1, tokens, head_dim], for a sequence of
    /// <paramref name="sequenceLength"/> tokens (transformers: the largest position + 1), which only dynamic scaling reads.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Gather(Tensor positions, long sequenceLength = 0)
    {
        var shape = new long[] { positions.shape[0], 1, positions.shape[1], HeadDim };
        if (IsDynamic && sequenceLength > OriginalContext)
        {
            using var scope = NewDisposeScope();
            var frequencies = InverseFrequencies(HeadDim, _theta, _scaling, MaxPositions, sequenceLength);
            var (cos, sin) = Angles(positions.reshape(-1).to_type(ScalarType.Float64).cpu(), frequencies);
            return (cos.to(positions.device).view(shape).MoveToOuterDisposeScope(), sin.to(positions.device).view(shape).MoveToOuterDisposeScope());
        }
        var flat = positions.reshape(-1);
        return (Cos.index_select(0, flat).view(shape), Sin.index_select(0, flat).view(shape));
    }

    private (Tensor Cos, Tensor Sin) Angles(Tensor positions, double[] inverseFrequency)
    {
        var angles = outer(positions, tensor(inverseFrequency, ScalarType.Float64));
        var full = cat([angles, angles], dim: -1);
        return ((full.cos() * AttentionFactor).to_type(ScalarType.Float32), (full.sin() * AttentionFactor).to_type(ScalarType.Float32));
    }

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
    }
}
