namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// The exchange of ranks that share one process (one thread per rank, or one per device): each step's values are held
/// until every rank has handed its in, then summed in rank order once and copied back to every rank. Ranges are only
/// counted as they start: the whole array is summed at <see cref="IGradientExchange.Finish"/>.
/// </summary>
public sealed class InProcessGradientExchange(int worldSize)
{
    private readonly object _gate = new();
    private readonly float[]?[] _parts = new float[]?[worldSize];
    private float[]? _sum;
    private float[]? _buffer;
    private int _step = -1;
    private int _arrived;
    private int _collected;

    /// <summary>The exchange as rank <paramref name="rank"/> sees it.</summary>
    public IGradientExchange ForRank(int rank) => new Rank(this, rank);

    private void SumInPlace(int rank, int step, float[] values, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            // The previous step's sum is still being collected by slower ranks.
            while (_sum is not null) Wait(cancellationToken);
            if (_arrived == 0) _step = step;
            if (_step != step) throw new InvalidOperationException($"Rank {rank} sent step {step} while the group sums step {_step}.");
            _parts[rank] = values;
            if (++_arrived == worldSize)
            {
                var sum = _buffer is { } reused && reused.Length == values.Length ? reused : new float[values.Length];
                _buffer = sum;
                RankOrderedSum.Sum([.. _parts.Select(p => (ReadOnlyMemory<float>)p!)], sum);
                _sum = sum;
                Monitor.PulseAll(_gate);
            }
            while (_sum is null) Wait(cancellationToken);
            _sum.CopyTo(values, 0);
            if (++_collected == worldSize)
            {
                Array.Clear(_parts);
                (_sum, _arrived, _collected) = (null, 0, 0);
                Monitor.PulseAll(_gate);
            }
        }
    }

    private void Wait(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Monitor.Wait(_gate, TimeSpan.FromMilliseconds(100));
    }

    private sealed class Rank(InProcessGradientExchange group, int rank) : IGradientExchange
    {
        private long _started;

        public void Start(int step, float[] values, int start, int count) => _started += count;

        public void Finish(int step, float[] values, CancellationToken cancellationToken)
        {
            if (_started != values.Length) throw new InvalidOperationException($"Rank {rank} started {_started} of {values.Length} values of step {step}.");
            _started = 0;
            group.SumInPlace(rank, step, values, cancellationToken);
        }
    }
}
