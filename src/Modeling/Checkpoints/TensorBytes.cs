using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Babel.Storage;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>Moves tensor data between files and native tensor memory without staging whole tensors in managed arrays.</summary>
internal static class TensorBytes
{
    // Spans are int-indexed: copy in pieces of at most 1 GiB so tensors larger than 2 GB work.
    private const long MaxChunkBytes = 1L << 30;
    // Half-width sources are converted through a small pooled buffer.
    private const int ConversionBlockElements = 1 << 20;

    /// <summary>Reads a float32 tensor of <paramref name="shape"/> stored as <paramref name="dtype"/> at <paramref name="offset"/>.</summary>
    public static Tensor ReadFloat32(SafeFileHandle file, long offset, long[] shape, SafeTensorsDtype dtype, string path)
    {
        var tensor = empty(shape, ScalarType.Float32);
        try
        {
            using var flat = tensor.view(-1);
            var count = flat.shape[0];
            var chunkElements = MaxChunkBytes / sizeof(float);
            var sourceSize = SafeTensors.ElementSize(dtype);
            for (long start = 0; start < count; start += chunkElements)
            {
                var length = Math.Min(chunkElements, count - start);
                using var chunk = flat.narrow(0, start, length);
                var destination = MemoryMarshal.Cast<byte, float>(chunk.bytes);
                var chunkOffset = offset + start * sourceSize;
                if (dtype == SafeTensorsDtype.F32)
                {
                    ReadExactly(file, chunkOffset, MemoryMarshal.AsBytes(destination), path);
                }
                else
                {
                    ReadConverted(file, chunkOffset, destination, dtype, path);
                }
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private static void ReadConverted(SafeFileHandle file, long offset, Span<float> destination, SafeTensorsDtype dtype, string path)
    {
        var size = SafeTensors.ElementSize(dtype);
        var buffer = ArrayPool<byte>.Shared.Rent(ConversionBlockElements * size);
        try
        {
            for (var done = 0; done < destination.Length;)
            {
                var count = Math.Min(ConversionBlockElements, destination.Length - done);
                var source = buffer.AsSpan(0, count * size);
                ReadExactly(file, offset + (long)done * size, source, path);
                Convert(source, destination.Slice(done, count), dtype);
                done += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Widens little-endian <paramref name="dtype"/> elements to float32.</summary>
    internal static void Convert(ReadOnlySpan<byte> source, Span<float> destination, SafeTensorsDtype dtype)
    {
        switch (dtype)
        {
            case SafeTensorsDtype.BF16:
                // bfloat16 is the upper half of a float32: shifting it back is exact.
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]) << 16);
                }
                break;
            case SafeTensorsDtype.F16:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]));
                }
                break;
            case SafeTensorsDtype.F64:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]);
                }
                break;
            case SafeTensorsDtype.F32:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]);
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
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
