using static TorchSharp.torch;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// A model's gradients as one float32 array in parameter order, followed by a few extra values that travel with them
/// (a rank's share of the loss and its token count), and back.
/// </summary>
public static class GradientBuffer
{
    /// <summary>Every parameter's gradient (zeros where none) flattened in order, then <paramref name="extra"/>.</summary>
    public static float[] Flatten(IReadOnlyList<Tensor> parameters, ReadOnlySpan<float> extra)
    {
        var length = parameters.Sum(p => p.numel());
        var values = new float[length + extra.Length];
        var offset = 0;
        foreach (var parameter in parameters)
        {
            var count = (int)parameter.numel();
            if (parameter.grad is { } grad)
            {
                using var flat = grad.detach().to(float32).contiguous().view(-1);
                flat.data<float>().CopyTo(values.AsSpan(offset, count));
            }
            offset += count;
        }
        extra.CopyTo(values.AsSpan(offset));
        return values;
    }

    /// <summary>Writes the gradient part of <paramref name="values"/> back into the parameters' gradients; returns the extra values.</summary>
    public static ReadOnlySpan<float> Unflatten(float[] values, IReadOnlyList<Tensor> parameters)
    {
        var offset = 0;
        foreach (var parameter in parameters)
        {
            var count = (int)parameter.numel();
            using var slice = tensor(values.AsSpan(offset, count).ToArray(), parameter.shape);
            if (parameter.grad is { } grad)
            {
                using (no_grad()) grad.copy_(slice);
            }
            else
            {
                parameter.grad = slice.to(parameter.dtype).clone();
            }
            offset += count;
        }
        return values.AsSpan(offset);
    }
}
