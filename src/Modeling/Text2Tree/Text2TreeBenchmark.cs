namespace Babel.Modeling.Text2Tree;

/// <summary>Training examples/s of one method, from a run of <see cref="Text2TreeBenchmark.TrainingThroughput"/>.</summary>
public sealed record MethodThroughput(string Method, double ExamplesPerSecond);

/// <summary>
/// What <c>babel bench text2tree</c> measures on this machine: training examples/s per method (tiny encoder, batch 64,
/// one thread; evaluation time left out), and the options of the short runs its grid-throughput comparison uses.
/// </summary>
public static class Text2TreeBenchmark
{
    /// <summary>Validation and test records of a benchmark run: enough to evaluate, few enough not to dominate.</summary>
    public const int EvaluationRecords = 200;

    /// <summary>Options of a benchmark run of <paramref name="method"/> for <paramref name="steps"/> steps that evaluates and checkpoints once, at its end.</summary>
    public static Text2TreeOptions Options(string method, int steps) =>
        new() { Method = method, Steps = steps, EvalInterval = steps, CheckpointInterval = steps, MaxEval = EvaluationRecords };

    /// <summary>Trains each method for <paramref name="steps"/> steps in its own folder under <paramref name="workDirectory"/>; yields each result as it is measured.</summary>
    public static IEnumerable<MethodThroughput> TrainingThroughput(string dataDirectory, IReadOnlyList<string> methods, int steps, string workDirectory,
        CancellationToken cancellationToken = default)
    {
        foreach (var method in methods)
        {
            var metrics = Text2TreeTrainer.Train(dataDirectory, Options(method, steps), Path.Combine(workDirectory, "train-" + method), cancellationToken: cancellationToken);
            yield return new MethodThroughput(method, metrics.TrainExamplesPerSecond);
        }
    }
}
