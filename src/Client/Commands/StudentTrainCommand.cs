using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel distill train</c>: one student, in this process; with <c>--data-parallel N</c> (N &gt; 1) a job whose N ranks
/// each compute their micro-batches of every global batch and sum gradients every step, writing the same output folder.
/// </summary>
internal static class StudentTrainCommand
{
    public static Command Create()
    {
        var shared = new StudentCommand.TrainingOptions();
        var defaults = new StudentOptions();
        var setting = new Option<string>("--setting") { Description = $"What the student learns: {string.Join(", ", StudentSettings.All)}.", DefaultValueFactory = _ => defaults.Setting };
        var labels = new Option<string>("--labels") { Description = "Answer labels: gt (gold) or llm (the teacher's).", DefaultValueFactory = _ => defaults.Labels };
        var student = new Option<string>("--student") { Description = $"A preset trained from scratch ({string.Join(", ", ModelPresets.Names)}) or a Babel model folder to start from.", DefaultValueFactory = _ => defaults.Student };
        var seed = new Option<long>("--seed") { Description = "Seed of the initial weights and the data order.", DefaultValueFactory = _ => defaults.Seed };
        var output = new Option<string>("--out") { Description = "Folder for metrics.json, predictions.jsonl, history.jsonl, loss.png, model/ (the chosen student) and checkpoint/ (a rerun resumes from it).", Required = true };
        var dataParallel = new Option<int>("--data-parallel") { Description = "Ranks of a data-parallel job (one device worker each, gradients summed every step); 1 trains in this process.", DefaultValueFactory = _ => 1 };
        var microBatches = new Option<int?>("--micro-batches") { Description = "Micro-batches each global batch is cut into (default: the ranks); a group that lost ranks accumulates them." };
        var lease = new Option<double>("--lease-seconds") { Description = "With --data-parallel: a rank's lease; a step waits at most half of it for a silent rank.", DefaultValueFactory = _ => PretrainCommand.DefaultLeaseSeconds };
        var job = new JobCommandOptions { DefaultWorkers = parse => parse.GetValue(dataParallel) };
        var command = new Command("train", "Train one student on distillation data (a rerun with the same options resumes), in this process or data-parallel on the job engine.")
        {
            setting, labels, student, seed, output, dataParallel, microBatches, lease,
        };
        shared.AddTo(command);
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var options = (shared.Read(parse) with
            {
                Setting = parse.GetValue(setting)!,
                Labels = parse.GetValue(labels)!,
                Student = parse.GetValue(student)!,
                Seed = parse.GetValue(seed),
            }).Validate();
            var corpus = StudentCorpus.Load(parse.GetValue(shared.Data)!, parse.GetValue(shared.Test));
            var outDirectory = Path.GetFullPath(parse.GetValue(output)!);
            var writer = parse.InvocationConfiguration.Output;
            var ranks = parse.GetValue(dataParallel);
            if (ranks < 1) throw new UserInputException($"--data-parallel must be at least 1 (got {ranks}).");
            if (ranks > 1)
            {
                var leaseSeconds = parse.GetValue(lease);
                if (!(leaseSeconds >= 2)) throw new UserInputException($"--lease-seconds must be at least 2 (got {leaseSeconds}).");
                StudentTrainJob? kind = null;
                return job.RunAsync(parse, kinds => kind = kinds.Get<StudentTrainJob>(),
                    (jobs, ct) => StudentTrainJob.UploadInputsAsync(jobs, corpus, options, ranks, parse.GetValue(microBatches) ?? ranks, TimeSpan.FromSeconds(leaseSeconds / 2), ct),
                    result =>
                    {
                        kind!.Save(result, outDirectory);
                        writer.WriteLine($"{StudentCommand.Summary(result.Metrics)} ({ranks} data-parallel ranks)");
                        return 0;
                    }, cancellationToken, new JobOptions(LeaseDuration: TimeSpan.FromSeconds(leaseSeconds)));
            }
            var metrics = StudentTrainer.TrainToFolder(corpus, options, outDirectory, StudentCommand.Reporter(parse.InvocationConfiguration.Error), cancellationToken);
            writer.WriteLine(StudentCommand.Summary(metrics));
            writer.WriteLine($"wrote {Path.Combine(outDirectory, StudentTrainer.MetricsFile)}, {StudentTrainer.PredictionsFile}, {TrainingHistory.FileName}, {TrainingHistory.PlotFileName} and {StudentTrainer.ModelFolder}/");
            return Task.FromResult(0);
        });
        return command;
    }
}
