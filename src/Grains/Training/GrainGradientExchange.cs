using System.Runtime.InteropServices;
using Babel.Contracts;
using Babel.Modeling.Training.DataParallel;

namespace Babel.Grains.Training;

/// <summary>
/// A rank's side of <see cref="IGradientReduceGrain"/>: the flattened gradient goes out in chunks of
/// <see cref="ChunkValues"/> floats (4 MB, well under Orleans' message size limit), all chunks at once, and each summed
/// chunk is copied back. A group change, a reduce grain that does not answer within the step timeout, or one lost with its
/// silo all mean the same to the rank: rejoin.
/// </summary>
public sealed class GrainGradientExchange(IGradientReduceGrain reduce, Guid generation, int rank, TimeSpan stepTimeout) : IGradientExchange
{
    /// <summary>Floats per call: 4 MB.</summary>
    public const int ChunkValues = 1 << 20;

    /// <summary>How much longer than the step timeout a rank waits for the grain's answer before it gives the group up.</summary>
    public static readonly TimeSpan AnswerMargin = TimeSpan.FromSeconds(10);

    // One buffer per chunk, reused while the length stays: megabytes allocated per step would keep the collector busy
    // mid-training. DiLoCo's synchronisations vary in length (a short last round, every rank's state at a checkpoint).
    private byte[][] _chunks = [];

    public void SumInPlace(int step, float[] values, CancellationToken cancellationToken)
    {
        var count = (values.Length + ChunkValues - 1) / ChunkValues;
        if (_chunks.Length != count) Array.Resize(ref _chunks, count);
        for (var c = 0; c < count; c++)
        {
            var bytes = Length(values.Length, c) * sizeof(float);
            if (_chunks[c]?.Length != bytes) _chunks[c] = new byte[bytes];
        }
        var calls = new Task<GradientChunkSum>[count];
        for (var c = 0; c < count; c++)
        {
            MemoryMarshal.AsBytes(values.AsSpan(c * ChunkValues, Length(values.Length, c))).CopyTo(_chunks[c]);
            calls[c] = reduce.SumAsync(generation, step, rank, c, _chunks[c], stepTimeout);
        }
        GradientChunkSum[] sums;
        try
        {
            sums = Task.WhenAll(calls).WaitAsync(stepTimeout + AnswerMargin, cancellationToken).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            throw new GroupChangedException($"the gradient exchange did not answer for step {step + 1} ({e.Message})");
        }
        for (var c = 0; c < count; c++)
        {
            if (sums[c] is not { GroupChanged: false, Sum: { } sum }) throw new GroupChangedException($"the group changed at step {step + 1}");
            MemoryMarshal.Cast<byte, float>(sum).CopyTo(values.AsSpan(c * ChunkValues));
        }
    }

    private static int Length(int total, int chunk) => Math.Min(ChunkValues, total - chunk * ChunkValues);
}
