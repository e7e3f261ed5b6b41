using Babel.Modeling.Runtime;
using static TorchSharp.torch;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// A model's gradients as one float32 array in parameter order, followed by a few extra values that travel with them
/// (a rank's share of the loss and its token count), and back. The array is allocated once per run and reused: a fresh
/// array of megabytes every step would keep the garbage collector busy in the middle of the training loop.
/// </summary>
public sealed class GradientBuffer
{
    private readonly IReadOnlyList<Tensor> _parameters;
    // Where each parameter's values start; the last entry is where the extra values start.
    private readonly int[] _offsets;

    public GradientBuffer(IReadOnlyList<Tensor> parameters, int extra)
    {
        _parameters = parameters;
        _offsets = new int[parameters.Count + 1];
        for (var i = 0; i < parameters.Count; i++) _offsets[i + 1] = checked(_offsets[i] + (int)parameters[i].numel());
        Values = new float[_offsets[^1] + extra];
    }

    /// <summary>The gradients followed by the extra values.</summary>
    public float[] Values { get; }

    /// <summary>How many values are gradients (the extra values follow them).</summary>
    public int GradientValues => _offsets[^1];

    /// <summary>The values [start, start + count) of parameters [<paramref name="first"/>, <paramref name="end"/>).</summary>
    public (int Start, int Count) Range(int first, int end) => (_offsets[first], _offsets[end] - _offsets[first]);

    /// <summary>Copies the gradients of parameters [<paramref name="first"/>, <paramref name="end"/>) into <see cref="Values"/> (zeros where a parameter has none).</summary>
    public void Flatten(int first, int end)
    {
        for (var i = first; i < end; i++)
        {
            var values = Values.AsSpan(_offsets[i], _offsets[i + 1] - _offsets[i]);
            if (_parameters[i].grad is { } grad)
            {
                using var flat = grad.detach().contiguous();
                HostFloats.Of(flat).CopyTo(values);
            }
            else
            {
                values.Clear();
            }
        }
    }

    /// <summary>Writes the extra values after the gradients.</summary>
    public void SetExtra(ReadOnlySpan<float> extraValues) => extraValues.CopyTo(Values.AsSpan(GradientValues));

    /// <summary>Writes the gradient part of <see cref="Values"/> back into the parameters' gradients; returns the extra values.</summary>
    public ReadOnlySpan<float> Unflatten()
    {
        for (var i = 0; i < _parameters.Count; i++)
        {
            var grad = _parameters[i].grad ?? throw new InvalidOperationException("Every parameter of a data-parallel model must have a gradient after the backward pass.");
            if (!grad.is_contiguous() || grad.dtype != ScalarType.Float32) throw new InvalidOperationException("Data-parallel gradients must be contiguous float32.");
            Values.AsSpan(_offsets[i], _offsets[i + 1] - _offsets[i]).CopyTo(HostFloats.Of(grad));
        }
        return Values.AsSpan(GradientValues);
    }
}
