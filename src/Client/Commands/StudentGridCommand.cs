using System.CommandLine;
using Babel.Grains.Distillation;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel distill grid</c>: the "Mind's Mirror" ablation, every (setting, labels, student, seed) as a shard of one job; results table and plot.</summary>
internal static class StudentGridCommand
{
    /// <summary>
    /// The workers renew a lease every third of it while a run is alive, so it only bounds how long a run of a dead silo
    /// (or of a killed embedded client) waits before another worker resumes it from its last checkpoint.
    /// </summary>
    public const double DefaultLeaseSeconds = 180;

    public static Command Create()
    {
        var shared = new StudentCommand.TrainingOptions();
        var settings = new Option<string>("--settings") { Description = $"Comma-separated settings: {string.Join(", ", StudentSettings.All)}.", DefaultValueFactory = _ => string.Join(",", StudentSettings.All) };
        var labels = new Option<string>("--labels") { Description = "Comma-separated label sources: gt (gold), llm (the teacher's).", DefaultValueFactory = _ => StudentLabels.Gold };
        var students = new Option<string>("--students") { Description = $"Comma-separated students: presets trained from scratch ({string.Join(", ", ModelPresets.Names)}) or Babel model folders.", DefaultValueFactory = _ => "micro" };
        var seeds = new Option<int>("--seeds") { Description = "Seeds 1..N per configuration.", DefaultValueFactory = _ => 3 };
        var output = new Option<string>("--out") { Description = "Folder for results.json, results.md, results.html and accuracy.png.", Required = true };
        var lease = new Option<double>("--lease-seconds") { Description = "A run's lease, renewed every third of it while the run is alive; a run of a dead worker resumes elsewhere after it expires.", DefaultValueFactory = _ => DefaultLeaseSeconds };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo (runs in parallel).", DefaultValueFactory = _ => 1 };
        var engine = new EngineOptions();
        var command = new Command("grid", "Train the ablation grid settings × labels × students × seeds as shards of a job (resumable: a rerun continues the same job from the runs' checkpoints).")
        {
            settings, labels, students, seeds, output, workers, lease,
        };
        shared.AddTo(command);
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var seedCount = parse.GetValue(seeds);
            if (seedCount <= 0) throw new UserInputException($"--seeds must be positive (got {seedCount}).");
            var leaseSeconds = parse.GetValue(lease);
            if (!(leaseSeconds >= 1)) throw new UserInputException($"--lease-seconds must be at least 1 (got {leaseSeconds}).");
            var baseOptions = shared.Read(parse).Validate();
            var settingList = List(parse.GetValue(settings)!, "--settings");
            var labelList = List(parse.GetValue(labels)!, "--labels");
            var studentList = List(parse.GetValue(students)!, "--students");
            foreach (var setting in settingList) StudentSettings.Require(setting);
            foreach (var label in labelList) StudentLabels.Require(label);
            foreach (var student in studentList) RequireStudent(student);
            // Reading the corpus first reports a bad folder before the engine starts.
            var dataDirectory = parse.GetValue(shared.Data)!;
            var corpus = StudentCorpus.Load(dataDirectory, parse.GetValue(shared.Test));
            var error = parse.InvocationConfiguration.Error;
            IReadOnlyList<StudentMetrics> runs;
            string jobId;
            await using (var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken))
            {
                (jobId, runs) = await RunAsync(connection, corpus, baseOptions, settingList, labelList, studentList,
                    [.. Enumerable.Range(1, seedCount).Select(s => (long)s)], error, cancellationToken, TimeSpan.FromSeconds(leaseSeconds));
            }
            var directory = Path.GetFullPath(parse.GetValue(output)!);
            var report = StudentGridReport.Write(directory, runs, new { job = jobId, data = Path.GetFullPath(dataDirectory), test = corpus.TestSource, students = studentList, options = baseOptions });
            var writer = parse.InvocationConfiguration.Output;
            writer.Write(report.Markdown());
            writer.WriteLine($"wrote {Path.Combine(directory, StudentGridReport.MarkdownFile)}, {StudentGridReport.HtmlFile}, {StudentGridReport.JsonFile} and {StudentGridReport.PlotFile}");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Uploads the corpus (and any student model folders), runs the grid job to the end (or continues it), returns every
    /// run's metrics in plan order and deletes the runs' checkpoint zips from the artifact store.
    /// </summary>
    public static async Task<(string JobId, IReadOnlyList<StudentMetrics> Runs)> RunAsync(EngineConnection connection, StudentCorpus corpus, StudentOptions baseOptions,
        IReadOnlyList<string> settings, IReadOnlyList<string> labels, IReadOnlyList<string> students, IReadOnlyList<long> seeds, TextWriter progress, CancellationToken cancellationToken,
        TimeSpan? leaseDuration = null)
    {
        var studentKeys = new List<string>();
        foreach (var student in students)
        {
            if (StudentGridJob.IsPreset(student)) studentKeys.Add(student);
            else studentKeys.Add(await connection.Jobs.UploadFolderAsync(RequireStudent(student), "models", cancellationToken));
        }
        var staging = Directory.CreateTempSubdirectory("babel-student-corpus-").FullName;
        string corpusKey;
        try
        {
            corpus.Save(Path.Combine(staging, StudentCorpus.FileName));
            corpusKey = await connection.Jobs.UploadFolderAsync(staging, "datasets", cancellationToken);
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
        var parameters = new StudentGridParameters(corpusKey, baseOptions, [.. settings], [.. labels], [.. studentKeys], [.. seeds]);
        var json = JobParameters.Serialize(parameters);
        StudentGridJob.ParseParameters(json);
        var spec = JobClient.Spec(StudentGridJob.KindName, json, leaseDuration: leaseDuration ?? TimeSpan.FromSeconds(DefaultLeaseSeconds));
        var jobId = JobClient.DefaultJobId(spec);
        await JobProgress.RunAsync(connection, jobId, spec, progress, cancellationToken);
        var runs = await StudentGridJob.AssembleAsync(connection.Store, jobId, parameters, cancellationToken);
        await StudentGridJob.DeleteCheckpointsAsync(connection.Store, parameters, cancellationToken);
        return (jobId, runs);
    }

    private static string RequireStudent(string student) => StudentGridJob.IsPreset(student) || Directory.Exists(student)
        ? student
        : throw new UserInputException($"The student '{student}' is neither a preset ({string.Join(", ", ModelPresets.Names)}) nor a model folder; pass a preset name or a Babel model folder.");

    private static string[] List(string text, string option)
    {
        var values = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (values.Length == 0) throw new UserInputException($"{option} needs at least one value.");
        return values;
    }
}
