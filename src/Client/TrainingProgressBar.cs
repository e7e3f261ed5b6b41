using System.Globalization;
using Babel.Modeling.Training;
using Spectre.Console;

namespace Babel.Client;

/// <summary>How a training command shows its run: a bar with step, loss, learning rate and tokens/s, and the run's log lines above it.</summary>
internal static class TrainingProgressBar
{
    /// <summary>Runs <paramref name="train"/> (given the progress to report and where to log) under a bar named <paramref name="name"/>.</summary>
    public static T Run<T>(IAnsiConsole console, string name, int steps, Func<IProgress<TrainingProgress>, Action<string>, T> train)
    {
        T result = default!;
        console.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask(name, maxValue: steps);
                result = train(new SynchronousProgress<TrainingProgress>(p =>
                {
                    task.Value = p.Step;
                    task.Description = string.Create(CultureInfo.InvariantCulture,
                        $"step {p.Step}/{p.Steps} loss {p.Loss:F3} lr {p.LearningRate:E1} {p.TokensPerSecond:N0} tok/s{(p.Resumed ? " (resumed)" : "")}");
                }), line => console.WriteLine(line));
            });
        return result;
    }
}
