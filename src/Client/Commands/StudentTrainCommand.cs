using System.CommandLine;
using Babel.Grains.Distillation;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel distill train</c>: one student, in this process; with <c>--data-parallel N</c> (N &gt; 1) a job whose N ranks
/// each compute their micro-batches of every global batch and sum gradients every step (or, with <c>--sync-every H</c>, average
/// their weights every H steps: DiLoCo), writing the same output folder.
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
        var dataParallel = new DataParallelOptions("trains in this process");
        var job = dataParallel.JobOptions();
        var command = new Command("train", "Train one student on distillation data (a rerun with the same options resumes), in this process or data-parallel on the job engine.")
        {
            setting, labels, student, seed, output,
        };
        shared.AddTo(command);
        dataParallel.AddTo(command);
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var options = (shared.Read(parse) with
            {
                Setting = parse.GetValue(setting)!,
                Labels = parse.GetValue(labels)!,
                Student = parse.GetValue(student)!,
                Seed = parse.GetValue(seed),
            });
            options = dataParallel.Apply(parse, options).Validate();
            var corpus = StudentCorpus.Load(parse.GetValue(shared.Data)!, parse.GetValue(shared.Test));
            var outDirectory = Path.GetFullPath(parse.GetValue(output)!);
            var writer = parse.InvocationConfiguration.Output;
            if (dataParallel.Read(parse) is { } run)
            {
                StudentTrainJob? kind = null;
                return job.RunAsync(parse, kinds => kind = kinds.Get<StudentTrainJob>(),
                    (jobs, ct) => StudentTrainJob.UploadInputsAsync(jobs, corpus, options, run.Ranks, run.MicroBatches, run.StepTimeout, ct),
                    result =>
                    {
                        kind!.Save(result, outDirectory);
                        writer.WriteLine($"{StudentCommand.Summary(result.Metrics)} ({run.Ranks} data-parallel ranks)");
                        return 0;
                    }, cancellationToken, run.JobOptions);
            }
            var metrics = StudentTrainer.TrainToFolder(corpus, options, outDirectory, StudentCommand.Reporter(parse.InvocationConfiguration.Error), cancellationToken);
            writer.WriteLine(StudentCommand.Summary(metrics));
            writer.WriteLine($"wrote {Path.Combine(outDirectory, StudentTrainer.MetricsFile)}, {StudentTrainer.PredictionsFile}, {TrainingHistory.FileName}, {TrainingHistory.PlotFileName} and {StudentTrainer.ModelFolder}/");
            return Task.FromResult(0);
        });
        return command;
    }
}
