using System.Runtime.InteropServices;
using Babel.Contracts;
using Babel.Modeling.Training.DataParallel;

namespace Babel.Grains.Training;

/// <summary>
/// A rank's side of the sharded exchange: the flattened gradient is cut into a multiple of N equal chunks of at most
/// <see cref="ChunkValues"/> floats (4 MB, well under Orleans' message size limit); chunk c goes to shard c mod N
/// (<see cref="IGradientReduceGrain"/>, one per rank, on the ranks' silos), all chunks at once, and each summed chunk is
/// copied back: a reduce-scatter and all-gather. A group change, a shard that does not answer within the step timeout,
/// or one lost with its silo all mean the same to the rank: rejoin.
/// </summary>
public sealed class GrainGradientExchange : IGradientExchange
{
    /// <summary>Most floats per call: 4 MB.</summary>
    public const int ChunkValues = 1 << 20;

    /// <summary>How much longer than the step timeout a rank waits for the shards' answers before it gives the group up.</summary>
    public static readonly TimeSpan AnswerMargin = TimeSpan.FromSeconds(10);

    private readonly IGradientReduceGrain[] _shards;
    private readonly int _rank;
    private readonly TimeSpan _stepTimeout;
    // One buffer per chunk, reused while the length stays: megabytes allocated per step would keep the collector busy
    // mid-training. DiLoCo's synchronisations vary in length (a short last round, every rank's state at a checkpoint).
    private byte[][] _chunks = [];

    public GrainGradientExchange(IGrainFactory grains, string jobId, Guid generation, int rank, int ranks, TimeSpan stepTimeout)
    {
        _shards = [.. Enumerable.Range(0, ranks).Select(s => grains.GetGrain<IGradientReduceGrain>(GradientReduceGrain.Key(jobId, generation, s)))];
        _rank = rank;
        _stepTimeout = stepTimeout;
    }

    /// <summary>The shard this rank owns; opening it places it on the rank's silo.</summary>
    public IGradientReduceGrain OwnShard => _shards[_rank];

    /// <summary>How <paramref name="total"/> values are cut for <paramref name="ranks"/> shards: a multiple of the ranks of chunks, each of ChunkLength values but the last ones.</summary>
    public static (int Chunks, int ChunkLength) Layout(int total, int ranks)
    {
        var chunks = ranks * Math.Max(1, (int)((total + (long)ranks * ChunkValues - 1) / ((long)ranks * ChunkValues)));
        return (chunks, Math.Max(1, (int)((total + (long)chunks - 1) / chunks)));
    }

    public void SumInPlace(int step, float[] values, CancellationToken cancellationToken)
    {
        var (count, length) = Layout(values.Length, _shards.Length);
        if (_chunks.Length != count) Array.Resize(ref _chunks, count);
        var calls = new Task<GradientChunkSum>[count];
        for (var c = 0; c < count; c++)
        {
            var (start, size) = Range(values.Length, length, c);
            if (_chunks[c]?.Length != size * sizeof(float)) _chunks[c] = new byte[size * sizeof(float)];
            MemoryMarshal.AsBytes(values.AsSpan(start, size)).CopyTo(_chunks[c]);
            calls[c] = _shards[c % _shards.Length].SumAsync(step, _shards.Length, _rank, c, _chunks[c], _stepTimeout);
        }
        GradientChunkSum[] sums;
        try
        {
            sums = Task.WhenAll(calls).WaitAsync(_stepTimeout + AnswerMargin, cancellationToken).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            throw new GroupChangedException($"the gradient exchange did not answer for step {step + 1} ({e.Message})");
        }
        for (var c = 0; c < count; c++)
        {
            if (sums[c] is not { GroupChanged: false, Sum: { } sum }) throw new GroupChangedException($"the group changed at step {step + 1}");
            MemoryMarshal.Cast<byte, float>(sum).CopyTo(values.AsSpan(Range(values.Length, length, c).Start));
        }
    }

    private static (int Start, int Count) Range(int total, int length, int chunk)
    {
        var start = (int)Math.Min(total, (long)chunk * length);
        return (start, Math.Min(length, total - start));
    }
}
