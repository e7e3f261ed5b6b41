using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Babel.Modeling.Runtime;

/// <summary>
/// The float32 elements of a contiguous CPU tensor as a span over the tensor's own memory: one memory copy where
/// TorchSharp's element accessor (<c>data&lt;float&gt;()</c>) copies element by element, tens of times slower for the
/// megabytes of a gradient.
/// </summary>
public static class HostFloats
{
    /// <summary>The elements of <paramref name="tensor"/>, valid while it lives; writing them writes the tensor.</summary>
    public static Span<float> Of(Tensor tensor)
    {
        if (tensor.dtype != ScalarType.Float32 || tensor.device_type != TorchSharp.DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new InvalidOperationException($"Expected a contiguous float32 CPU tensor, got {tensor.dtype} on {tensor.device_type}{(tensor.is_contiguous() ? "" : " (strided)")}.");
        }
        return MemoryMarshal.Cast<byte, float>(tensor.bytes);
    }
}
