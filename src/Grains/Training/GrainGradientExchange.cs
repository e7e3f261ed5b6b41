using System.Runtime.InteropServices;
using Babel.Contracts;
using Babel.Modeling.Training.DataParallel;
using Orleans.Concurrency;

namespace Babel.Grains.Training;

/// <summary>
/// A rank's side of the sharded exchange: each range a rank starts is cut into a multiple of N equal chunks of at most
/// <see cref="ChunkValues"/> floats (4 MB, well under Orleans' message size limit); chunk c of a range goes to shard
/// c mod N (<see cref="IGradientReduceGrain"/>, one per rank, on the ranks' silos) at once, named by its offset in the
/// array, and each summed chunk is copied back when the step finishes: a reduce-scatter and all-gather, overlapping
/// whatever the rank does between starting a range and finishing the step. A group change, a shard that does not answer
/// within the step timeout, or one lost with its silo all mean the same to the rank: rejoin.
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
    // One buffer per chunk offset, reused while its length stays: megabytes allocated per step would keep the collector
    // busy mid-training. A shard on this silo reads the buffer itself (the part is immutable), so it is written again
    // only once the step's sums are back.
    private readonly Dictionary<int, byte[]> _buffers = [];
    private readonly List<(Task<GradientChunkSum> Sum, int Start)> _calls = [];
    private int _step = -1;

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

    public void Start(int step, float[] values, int start, int count)
    {
        if (step != _step)
        {
            if (_calls.Count > 0) throw new InvalidOperationException($"Step {step + 1} started before step {_step + 1} finished.");
            _step = step;
        }
        var (chunks, length) = Layout(count, _shards.Length);
        for (var c = 0; c < chunks; c++)
        {
            var (offset, size) = Range(count, length, c);
            // Chunks past the end of a short range are empty on every rank alike.
            if (size == 0) continue;
            var at = start + offset;
            if (!_buffers.TryGetValue(at, out var buffer) || buffer.Length != size * sizeof(float)) _buffers[at] = buffer = new byte[size * sizeof(float)];
            MemoryMarshal.AsBytes(values.AsSpan(at, size)).CopyTo(buffer);
            try
            {
                _calls.Add((_shards[c % _shards.Length].SumAsync(step, _shards.Length, _rank, at, new Immutable<byte[]>(buffer), _stepTimeout), at));
            }
            catch (OrleansException e)
            {
                // A call that cannot even be sent (the client or silo is going away) means what an unanswered one does.
                throw new GroupChangedException($"the gradient exchange could not send step {step + 1} ({e.Message})");
            }
        }
    }

    public void Finish(int step, float[] values, CancellationToken cancellationToken)
    {
        if (step != _step) throw new InvalidOperationException($"Step {step + 1} finished but step {_step + 1} was started.");
        GradientChunkSum[] sums;
        try
        {
            sums = Task.WhenAll(_calls.Select(c => c.Sum)).WaitAsync(_stepTimeout + AnswerMargin, cancellationToken).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            throw new GroupChangedException($"the gradient exchange did not answer for step {step + 1} ({e.Message})");
        }
        var started = 0L;
        for (var c = 0; c < sums.Length; c++)
        {
            if (sums[c] is not { GroupChanged: false, Sum: { } sum }) throw new GroupChangedException($"the group changed at step {step + 1}");
            var floats = MemoryMarshal.Cast<byte, float>(sum);
            floats.CopyTo(values.AsSpan(_calls[c].Start));
            started += floats.Length;
        }
        _calls.Clear();
        if (started != values.Length) throw new InvalidOperationException($"Step {step + 1} summed {started} of {values.Length} values.");
    }

    private static (int Start, int Count) Range(int total, int length, int chunk)
    {
        var start = (int)Math.Min(total, (long)chunk * length);
        return (start, Math.Min(length, total - start));
    }
}
