using System.Diagnostics;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Benchmarks;

/// <summary>
/// <c>babel bench profile</c>: the cost of expert counting, as forward tokens/s without and with an
/// <see cref="ActivationCounter"/> attached, measured in one process.
/// </summary>
public static class ProfileBenchmark
{
    /// <summary>
    /// Plain and counted forwards of a randomly initialised <paramref name="config"/> model at batch × length, alternated
    /// (and the order flipped every round) so that clock and thermal drift fall on both sides alike. Each side's rate
    /// comes from its median forward time, so that a burst of load from another process does not decide the result.
    /// </summary>
    /// <returns>
    /// Plain and profiling tokens/s, and the counting share: the time spent inside the counter's hook over the counted
    /// forwards' time, timed within the same forwards (so it does not depend on drift between the plain and counted rounds).
    /// </returns>
    public static (double PlainTokensPerSecond, double ProfilingTokensPerSecond, double CountingShare) Measure(
        ModelConfig config, ExpertPartition partition, ActivationRule rule, int batch, int length, int threads, TimeSpan budget)
    {
        TorchRuntime.Initialize(threads);
        partition.CheckFits(config, "the benchmark's partition");
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(0);
        model.eval();
        using var guard = no_grad();
        using var ids = randint(config.VocabSize, [batch, length]);
        using var mask = ones([batch, length], ScalarType.Bool);
        using var counter = new ActivationCounter(partition, rule, CPU);
        var timed = new TimedHook(counter);

        double Plain()
        {
            using var scope = NewDisposeScope();
            var stopwatch = Stopwatch.StartNew();
            model.Forward(ids);
            return stopwatch.Elapsed.TotalSeconds;
        }

        double Counted()
        {
            using var scope = NewDisposeScope();
            var stopwatch = Stopwatch.StartNew();
            counter.SetTokenMask(mask);
            model.Forward(ids, hook: timed);
            return stopwatch.Elapsed.TotalSeconds;
        }

        Plain();
        Counted();
        timed.Seconds = 0;
        var plainSeconds = new List<double>();
        var countedSeconds = new List<double>();
        var rounds = 0;
        var total = Stopwatch.StartNew();
        do
        {
            if (rounds % 2 == 0)
            {
                plainSeconds.Add(Plain());
                countedSeconds.Add(Counted());
            }
            else
            {
                countedSeconds.Add(Counted());
                plainSeconds.Add(Plain());
            }
            rounds++;
        } while (total.Elapsed < budget || rounds < 4);
        // The one copy of the counts a profiling run makes at its end, spread over the rounds.
        var copy = Stopwatch.StartNew();
        counter.Counts();
        var copySeconds = copy.Elapsed.TotalSeconds / rounds;

        var tokens = (double)batch * length;
        return (tokens / Median(plainSeconds), tokens / (Median(countedSeconds) + copySeconds), (timed.Seconds + copySeconds * rounds) / countedSeconds.Sum());
    }

    /// <summary>The counter's hook with a stopwatch around it (torch runs synchronously on the CPU, so the time is the work's).</summary>
    private sealed class TimedHook(ActivationCounter counter) : IFeedForwardHook
    {
        public double Seconds { get; set; }

        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
        {
            var start = Stopwatch.GetTimestamp();
            var result = counter.OnIntermediate(layer, gate, intermediate);
            Seconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
            return result;
        }
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        var middle = values.Count / 2;
        return values.Count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
    }
}
