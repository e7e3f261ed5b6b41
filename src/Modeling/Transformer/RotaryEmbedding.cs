using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half convention: dimension i pairs with i + head_dim/2.
/// Cosine and sine tables are computed once for every position up to the model's maximum.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    public RotaryEmbedding(int headDim, int maxPositions, double theta)
    {
        HeadDim = headDim;
        MaxPositions = maxPositions;
        using var scope = NewDisposeScope();
        // Computed in float64 so long contexts keep their angles exact before the cast.
        var inverseFrequency = pow(theta, arange(0, headDim, 2, dtype: ScalarType.Float64) / (double)headDim).reciprocal();
        var angles = outer(arange(maxPositions, dtype: ScalarType.Float64), inverseFrequency);
        var full = cat([angles, angles], dim: -1);
        Cos = full.cos().to_type(ScalarType.Float32).MoveToOuterDisposeScope();
        Sin = full.sin().to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public int HeadDim { get; }
    public int MaxPositions { get; }
    /// <summary>[max_positions, head_dim].</summary>
    public Tensor Cos { get; }
    /// <summary>[max_positions, head_dim].</summary>
    public Tensor Sin { get; }

    /// <summary>Rotates <paramref name="x"/> [batch, heads, tokens, head_dim] by per-row positions given as gathered tables [batch, 1, tokens, head_dim].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        var half = x.shape[^1] / 2;
        using var secondHalf = x.narrow(-1, half, half).neg();
        using var rotated = cat([secondHalf, x.narrow(-1, 0, half)], dim: -1);
        return x * cos + rotated * sin;
    }

    /// <summary>Gathers the tables for <paramref name="positions"/> [batch, tokens] as [batch, 1, tokens, head_dim].</summary>
    public (Tensor Cos, Tensor Sin) Gather(Tensor positions)
    {
        var flat = positions.reshape(-1);
        var shape = new long[] { positions.shape[0], 1, positions.shape[1], HeadDim };
        return (Cos.index_select(0, flat).view(shape), Sin.index_select(0, flat).view(shape));
    }

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
    }
}
