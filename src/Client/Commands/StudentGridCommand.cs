using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel distill grid</c>: the "Mind's Mirror" ablation, every (setting, labels, student, seed) as a shard of one job; results table and plot.</summary>
internal static class StudentGridCommand
{
    public static Command Create()
    {
        var shared = new StudentCommand.TrainingOptions();
        var dataParallel = new Option<int>("--data-parallel") { Description = "Ranks of every run (one shard and device worker each, gradients summed every step, as 'distill train --data-parallel'); 1: each run is one shard.", DefaultValueFactory = _ => 1 };
        var job = new JobCommandOptions { DefaultWorkers = parse => parse.GetValue(dataParallel) };
        var settings = new Option<string>("--settings") { Description = $"Comma-separated settings: {string.Join(", ", StudentSettings.All)}.", DefaultValueFactory = _ => string.Join(",", StudentSettings.All) };
        var labels = new Option<string>("--labels") { Description = "Comma-separated label sources: gt (gold), llm (the teacher's).", DefaultValueFactory = _ => StudentLabels.Gold };
        var students = new Option<string>("--students") { Description = $"Comma-separated students: presets trained from scratch ({string.Join(", ", ModelPresets.Names)}) or Babel model folders.", DefaultValueFactory = _ => "micro" };
        var seeds = new Option<int>("--seeds") { Description = "Seeds 1..N per configuration.", DefaultValueFactory = _ => 3 };
        var output = new Option<string>("--out") { Description = "Folder for results.json, results.md, results.html and accuracy.png.", Required = true };
        var lease = new Option<double>("--lease-seconds") { Description = "A run's lease, renewed every third of it while the run is alive; a run of a dead worker resumes elsewhere after it expires.", DefaultValueFactory = _ => StudentGridJob.DefaultLease.TotalSeconds };
        var command = new Command("grid", "Train the ablation grid settings × labels × students × seeds as shards of a job (resumable: a rerun continues the same job from the runs' checkpoints).")
        {
            settings, labels, students, seeds, output, lease, dataParallel,
        };
        shared.AddTo(command);
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var seedCount = parse.GetValue(seeds);
            if (seedCount <= 0) throw new UserInputException($"--seeds must be positive (got {seedCount}).");
            var leaseSeconds = parse.GetValue(lease);
            if (!(leaseSeconds >= 1)) throw new UserInputException($"--lease-seconds must be at least 1 (got {leaseSeconds}).");
            var baseOptions = shared.Read(parse).Validate();
            var ranks = parse.GetValue(dataParallel);
            if (ranks < 1) throw new UserInputException($"--data-parallel must be at least 1 (got {ranks}).");
            var settingList = List(parse.GetValue(settings)!, "--settings");
            var labelList = List(parse.GetValue(labels)!, "--labels");
            var studentList = List(parse.GetValue(students)!, "--students");
            foreach (var setting in settingList) StudentSettings.Require(setting);
            foreach (var label in labelList) StudentLabels.Require(label);
            // Reading the corpus first reports a bad folder before the engine starts.
            var corpus = StudentCorpus.Load(parse.GetValue(shared.Data)!, parse.GetValue(shared.Test));
            long[] seedList = [.. Enumerable.Range(1, seedCount).Select(s => (long)s)];
            return job.RunAsync(parse, kinds => kinds.Get<StudentGridJob>(),
                (jobs, ct) => StudentGridJob.UploadInputsAsync(jobs, corpus, baseOptions, settingList, labelList, studentList, seedList, ct, ranks, stepTimeoutSeconds: leaseSeconds / 2),
                report =>
                {
                    var directory = Path.GetFullPath(parse.GetValue(output)!);
                    report.Save(directory);
                    var writer = parse.InvocationConfiguration.Output;
                    writer.Write(report.Markdown());
                    writer.WriteLine($"wrote {Path.Combine(directory, StudentGridReport.MarkdownFile)}, {StudentGridReport.HtmlFile}, {StudentGridReport.JsonFile} and {StudentGridReport.PlotFile}");
                    return 0;
                }, cancellationToken, new JobOptions(LeaseDuration: TimeSpan.FromSeconds(leaseSeconds)));
        });
        return command;
    }

    private static string[] List(string text, string option)
    {
        var values = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (values.Length == 0) throw new UserInputException($"{option} needs at least one value.");
        return values;
    }
}
