using Babel.Storage;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>Moves tensor data between files and native tensor memory without staging whole tensors in managed arrays.</summary>
internal static class TensorBytes
{
    // Spans are int-indexed: copy in pieces of at most 1 GiB so tensors larger than 2 GB work.
    private const long MaxChunkBytes = 1L << 30;
    // Elements converted per staging round trip (2–8 MB).
    private const int ConversionBlockElements = 1 << 20;

    /// <summary>
    /// Reads the tensor stored as <paramref name="dtype"/> at <paramref name="offset"/> into <paramref name="destination"/>
    /// (a contiguous CPU tensor of its shape, any floating type): straight into its memory when the types agree, else
    /// converted block by block.
    /// </summary>
    public static void ReadInto(SafeFileHandle file, long offset, Tensor destination, SafeTensorsDtype dtype, string path)
    {
        if (!destination.is_contiguous() || destination.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException("Tensor data is read into contiguous CPU tensors.", nameof(destination));
        using var flat = destination.view(-1);
        if (destination.dtype == SafeTensors.ScalarTypeOf(dtype))
        {
            ReadDirect(file, offset, flat, path);
        }
        else
        {
            ReadConverted(file, offset, flat, dtype, path);
        }
    }

    // The file bytes land in the tensor's own memory, no managed copy (safetensors and x64 are both little-endian).
    private static void ReadDirect(SafeFileHandle file, long offset, Tensor flat, string path)
    {
        var count = flat.shape[0];
        var chunkElements = MaxChunkBytes / flat.ElementSize;
        for (long start = 0; start < count; start += chunkElements)
        {
            using var chunk = flat.narrow(0, start, Math.Min(chunkElements, count - start));
            ReadExactly(file, offset + start * flat.ElementSize, chunk.bytes, path);
        }
    }

    // Another element type goes through a small staging tensor; libtorch's vectorised copy_ converts.
    private static void ReadConverted(SafeFileHandle file, long offset, Tensor flat, SafeTensorsDtype dtype, string path)
    {
        var count = flat.shape[0];
        if (count == 0) return;
        var size = SafeTensors.ElementSize(dtype);
        using var staging = empty([Math.Min(count, ConversionBlockElements)], SafeTensors.ScalarTypeOf(dtype));
        for (long start = 0; start < count; start += ConversionBlockElements)
        {
            var length = Math.Min(ConversionBlockElements, count - start);
            using var source = staging.narrow(0, 0, length);
            ReadExactly(file, offset + start * size, source.bytes, path);
            using var destination = flat.narrow(0, start, length);
            destination.copy_(source);
        }
    }

    /// <summary>Writes a contiguous CPU tensor's raw bytes to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, Tensor contiguous)
    {
        using var flat = contiguous.view(-1);
        var count = flat.shape[0];
        var chunkElements = MaxChunkBytes / contiguous.ElementSize;
        for (long start = 0; start < count; start += chunkElements)
        {
            using var chunk = flat.narrow(0, start, Math.Min(chunkElements, count - start));
            stream.Write(chunk.bytes);
        }
    }

    public static void ReadExactly(SafeFileHandle file, long offset, Span<byte> destination, string path)
    {
        while (!destination.IsEmpty)
        {
            var read = RandomAccess.Read(file, destination, offset);
            if (read == 0)
            {
                throw new UserInputException($"{path} ended while reading tensor data at byte {offset}; the file is truncated or changed while being read, so re-copy it.");
            }
            destination = destination[read..];
            offset += read;
        }
    }
}
