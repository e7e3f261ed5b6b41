using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Distillation;
using Babel.Grains.Engine;

namespace Babel.Client.Commands;

/// <summary><c>babel distill</c>: <c>generate</c> (teacher chains of thought and self-evaluations, as a job), <c>train</c> and <c>grid</c>.</summary>
internal static class DistillCommand
{
    public static Command Create()
    {
        var command = new Command("distill", "Self-evaluation distillation data (\"Mind's Mirror\").");
        command.Subcommands.Add(CreateGenerate());
        command.Subcommands.Add(StudentTrainCommand.Create());
        command.Subcommands.Add(StudentGridCommand.Create());
        return command;
    }

    private static Command CreateGenerate()
    {
        var options = new DistillGenerateOptions();
        var job = new JobCommandOptions();
        var command = new Command("generate", "Sample chains of thought and self-evaluations from a teacher for every question of a dataset (a job; every teacher call is cached).");
        options.AddTo(command);
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var (parameters, datasetFile, modelDirectory) = options.Read(parse);
            var lease = options.LeaseOf(parse);
            var folder = parse.GetValue(options.Output)!;
            return job.RunAsync(parse, kinds => kinds.Get<DistillJob>(),
                (jobs, ct) => jobs.Kinds.Get<DistillJob>().PrepareAsync(jobs, parameters, datasetFile, modelDirectory, parse.GetValue(job.Engine.Cluster), ct),
                result =>
                {
                    result.Save(folder);
                    parse.InvocationConfiguration.Output.WriteLine($"{result.Summary()}: {Path.GetFullPath(folder)}");
                    return 0;
                }, cancellationToken, new JobOptions(LeaseDuration: lease));
        });
        return command;
    }
}
