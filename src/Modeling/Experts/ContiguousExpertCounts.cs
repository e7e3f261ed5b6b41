using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// The activation rules applied on the host CPU in one pass over a layer's activations, for a partition whose experts are
/// contiguous slices of the intermediate vector (<see cref="ExpertPartition.IsContiguous"/>): per counted token, per expert,
/// the number of positive gates (threshold) or the L1 norm of the activations (top-k), vectorised, with the tokens split
/// over the threads torch uses. Reads float32 and bfloat16 where they lie (a strided view of the fused gate/up rows
/// included); other types are converted first. Skips tokens that are not counted (pads), and allocates nothing per call
/// but the per-thread tallies.
/// </summary>
internal static unsafe class ContiguousExpertCounts
{
    private const int RowsPerThreadAtLeast = 64;

    /// <summary>
    /// Adds 1 to <paramref name="counts"/>[e] for every counted token (<paramref name="include"/>) whose expert e has at
    /// least <paramref name="minimumPositive"/> positive entries of <paramref name="gate"/> ([..., experts · size]).
    /// </summary>
    public static void CountThreshold(Tensor gate, bool[] include, int experts, int size, long minimumPositive, Span<long> counts)
    {
        var rows = Rows.Of(gate, experts * size);
        Tally(rows, include, experts, counts, (row, local) =>
        {
            for (var expert = 0; expert < experts; expert++)
            {
                var offset = row + (long)expert * size;
                var positive = rows.IsBFloat16 ? PositiveBFloat16((ushort*)rows.Start + offset, size) : PositiveFloat32((float*)rows.Start + offset, size);
                if (positive >= minimumPositive) local[expert]++;
            }
        });
    }

    /// <summary>
    /// Adds 1 to <paramref name="counts"/>[e] for each of the <paramref name="topK"/> experts with the largest L1 norm of
    /// <paramref name="intermediate"/> ([..., experts · size]) at every counted token; of equal norms the lower index wins.
    /// </summary>
    public static void CountTopK(Tensor intermediate, bool[] include, int experts, int size, int topK, Span<long> counts)
    {
        var rows = Rows.Of(intermediate, experts * size);
        Tally(rows, include, experts, counts, (row, local) =>
        {
            Span<float> norms = stackalloc float[experts];
            for (var expert = 0; expert < experts; expert++)
            {
                var offset = row + (long)expert * size;
                norms[expert] = rows.IsBFloat16 ? AbsoluteSumBFloat16((ushort*)rows.Start + offset, size) : AbsoluteSumFloat32((float*)rows.Start + offset, size);
            }
            for (var choice = 0; choice < topK; choice++)
            {
                var best = -1;
                for (var expert = 0; expert < experts; expert++)
                {
                    if (norms[expert] >= 0 && (best < 0 || norms[expert] > norms[best])) best = expert;
                }
                if (best < 0) break;
                local[best]++;
                norms[best] = -1;
            }
        });
    }

    /// <summary>Runs <paramref name="countRow"/> (element offset of a row, per-thread tally) for every counted row, then adds the tallies.</summary>
    private static void Tally(Rows rows, bool[] include, int experts, Span<long> counts, Action<long, long[]> countRow)
    {
        if (include.Length != rows.Count)
        {
            throw new InvalidOperationException($"The token mask covers {include.Length} tokens but the activations have {rows.Count} rows; set the mask for this forward.");
        }
        var threads = Math.Clamp(Math.Min(get_num_threads(), rows.Count / RowsPerThreadAtLeast), 1, Environment.ProcessorCount);
        var tallies = new long[threads][];
        var chunk = (rows.Count + threads - 1) / threads;
        void Part(int part)
        {
            var local = tallies[part] = new long[experts];
            for (var row = part * chunk; row < Math.Min(rows.Count, (part + 1) * chunk); row++)
            {
                if (include[row]) countRow(row * rows.Stride, local);
            }
        }
        if (threads == 1) Part(0);
        else Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, Part);
        foreach (var tally in tallies)
        {
            for (var expert = 0; expert < experts; expert++) counts[expert] += tally[expert];
        }
    }

    private static int PositiveFloat32(float* x, int length)
    {
        var count = 0;
        var j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j <= length - 16; j += 16) count += BitOperations.PopCount(Vector512.GreaterThan(Vector512.Load(x + j), Vector512<float>.Zero).ExtractMostSignificantBits());
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; j <= length - 8; j += 8) count += BitOperations.PopCount(Vector256.GreaterThan(Vector256.Load(x + j), Vector256<float>.Zero).ExtractMostSignificantBits());
        }
        for (; j < length; j++) if (x[j] > 0) count++;
        return count;
    }

    /// <summary>bfloat16 bits b are a positive number (not zero, not NaN) exactly when 1 ≤ b ≤ 0x7F80 (+∞): b − 1 &lt; 0x7F80 unsigned.</summary>
    private static int PositiveBFloat16(ushort* x, int length)
    {
        const ushort Infinity = 0x7F80;
        var count = 0;
        var j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var one = Vector512.Create((ushort)1);
            var bound = Vector512.Create(Infinity);
            for (; j <= length - 32; j += 32) count += BitOperations.PopCount(Vector512.LessThan(Vector512.Load(x + j) - one, bound).ExtractMostSignificantBits());
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256.Create((ushort)1);
            var bound = Vector256.Create(Infinity);
            for (; j <= length - 16; j += 16) count += BitOperations.PopCount(Vector256.LessThan(Vector256.Load(x + j) - one, bound).ExtractMostSignificantBits());
        }
        for (; j < length; j++) if ((ushort)(x[j] - 1) < Infinity) count++;
        return count;
    }

    private static float AbsoluteSumFloat32(float* x, int length)
    {
        var sum = 0f;
        var j = 0;
        if (Vector512.IsHardwareAccelerated && length >= 16)
        {
            var total = Vector512<float>.Zero;
            for (; j <= length - 16; j += 16) total += Vector512.Abs(Vector512.Load(x + j));
            sum = Vector512.Sum(total);
        }
        else if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            var total = Vector256<float>.Zero;
            for (; j <= length - 8; j += 8) total += Vector256.Abs(Vector256.Load(x + j));
            sum = Vector256.Sum(total);
        }
        for (; j < length; j++) sum += MathF.Abs(x[j]);
        return sum;
    }

    /// <summary>bfloat16 is the top half of a float32: widened and shifted left by 16 bits, it is that float exactly.</summary>
    private static float AbsoluteSumBFloat16(ushort* x, int length)
    {
        var sum = 0f;
        var j = 0;
        if (Vector512.IsHardwareAccelerated && length >= 16)
        {
            var total = Vector512<float>.Zero;
            for (; j <= length - 16; j += 16)
            {
                var widened = Vector512.WidenLower(Vector256.Load(x + j).ToVector512Unsafe());
                total += Vector512.Abs(Vector512.ShiftLeft(widened, 16).AsSingle());
            }
            sum = Vector512.Sum(total);
        }
        for (; j < length; j++) sum += MathF.Abs(BitConverter.Int32BitsToSingle(x[j] << 16));
        return sum;
    }

    /// <summary>
    /// A tensor's rows of <c>width</c> elements as a base address and a row stride in elements: a strided view is read in
    /// place when its last dimension is dense and its rows are evenly spaced (a narrowed fused projection is); otherwise, or
    /// for a type other than float32 and bfloat16, a contiguous float32 copy is made (owned by the caller's dispose scope).
    /// </summary>
    private readonly struct Rows
    {
        public nint Start { get; init; }
        public long Stride { get; init; }
        public int Count { get; init; }
        public bool IsBFloat16 { get; init; }

        public static Rows Of(Tensor activations, int width)
        {
            if (activations.shape[^1] != width)
            {
                throw new InvalidOperationException($"Expected activations of width {width}, got [{string.Join(", ", activations.shape)}].");
            }
            if (activations.device_type != TorchSharp.DeviceType.CPU) throw new InvalidOperationException("Host counting reads CPU tensors only.");
            var typed = activations.dtype is ScalarType.Float32 or ScalarType.BFloat16 ? activations : activations.to(ScalarType.Float32);
            // reshape is a view when the rows are evenly spaced (a narrowed fused projection is), else a copy.
            var flat = typed.reshape(-1, width);
            if (flat.stride(1) != 1) flat = flat.contiguous();
            var count = (int)flat.shape[0];
            if (count == 0) return new Rows { Count = 0, Stride = width };
            var stride = flat.stride(0);
            // One dense 1-D view from the first row's first element to the last row's last: contiguous, so its bytes are addressable.
            var span = flat.as_strided([(count - 1) * stride + width], [1], flat.storage_offset());
            return new Rows
            {
                Start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span.bytes)),
                Stride = stride,
                Count = count,
                IsBFloat16 = flat.dtype == ScalarType.BFloat16,
            };
        }
    }
}
