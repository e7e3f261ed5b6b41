namespace Babel.Modeling.Training;

/// <summary>
/// The order training records are drawn in: epoch e is a permutation seeded by (seed, e); step s takes positions
/// s·B … s·B + B − 1. A pure function of (seed, step), so a resumed run draws the same batches as an uninterrupted one.
/// </summary>
public sealed class EpochOrder(int count, long seed)
{
    private readonly Dictionary<int, int[]> _epochs = [];

    public int[] Batch(int step, int size)
    {
        var batch = new int[size];
        for (var k = 0; k < size; k++)
        {
            var position = (long)step * size + k;
            var epoch = (int)(position / count);
            if (!_epochs.TryGetValue(epoch, out var permutation))
            {
                permutation = Permutation(new Random(StepSeed(seed, -1 - epoch)), count);
                _epochs[epoch] = permutation;
            }
            batch[k] = permutation[(int)(position % count)];
        }
        return batch;
    }

    /// <summary>The seed of a step's random draws (negative steps name epochs).</summary>
    public static int StepSeed(long seed, int step) => (int)((seed * 1_000_003L + step * 7919L + 17) & 0x7fffffff);

    public static int[] Permutation(Random random, int n)
    {
        var permutation = Enumerable.Range(0, n).ToArray();
        random.Shuffle(permutation);
        return permutation;
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread, in order (unlike <see cref="Progress{T}"/>, which posts).</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
