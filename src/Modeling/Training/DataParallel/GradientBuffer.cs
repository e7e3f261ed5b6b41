using static TorchSharp.torch;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// A model's gradients as one float32 array in parameter order, followed by a few extra values that travel with them
/// (a rank's share of the loss and its token count), and back. The array is allocated once per run and reused: a fresh
/// array of megabytes every step would keep the garbage collector busy in the middle of the training loop.
/// </summary>
public sealed class GradientBuffer(IReadOnlyList<Tensor> parameters, int extra)
{
    private readonly long _gradientValues = parameters.Sum(p => p.numel());

    /// <summary>The gradients followed by the extra values.</summary>
    public float[] Values { get; } = new float[parameters.Sum(p => p.numel()) + extra];

    /// <summary>Every parameter's gradient (zeros where none) flattened in order, then <paramref name="extraValues"/>.</summary>
    public float[] Flatten(ReadOnlySpan<float> extraValues)
    {
        var offset = 0;
        foreach (var parameter in parameters)
        {
            var count = (int)parameter.numel();
            if (parameter.grad is { } grad)
            {
                using var flat = grad.detach().contiguous().view(-1);
                flat.data<float>().CopyTo(Values.AsSpan(offset, count));
            }
            else
            {
                Values.AsSpan(offset, count).Clear();
            }
            offset += count;
        }
        extraValues.CopyTo(Values.AsSpan(offset));
        return Values;
    }

    /// <summary>Writes the gradient part of <see cref="Values"/> back into the parameters' gradients; returns the extra values.</summary>
    public ReadOnlySpan<float> Unflatten()
    {
        var offset = 0;
        foreach (var parameter in parameters)
        {
            var count = (int)parameter.numel();
            var grad = parameter.grad ?? throw new InvalidOperationException("Every parameter of a data-parallel model must have a gradient after the backward pass.");
            if (!grad.is_contiguous() || grad.dtype != ScalarType.Float32) throw new InvalidOperationException("Data-parallel gradients must be contiguous float32.");
            grad.data<float>().CopyFrom(Values, offset);
            offset += count;
        }
        return Values.AsSpan((int)_gradientValues);
    }
}
