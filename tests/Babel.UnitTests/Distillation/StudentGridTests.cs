using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Reports;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary><c>babel distill grid</c>: the job against direct training, the report's numbers, bad parameters, and checkpoints in the artifact store.</summary>
public class StudentGridTests
{
    private static readonly StudentOptions _small = new()
    {
        Steps = 20, SelfEvaluationSteps = 10, EvalInterval = 10, BatchSize = 8, Threads = 1, MaxRationaleTokens = 24,
    };

    private static string[] SmallArgs =>
    [
        "--steps", "20", "--self-evaluation-steps", "10", "--eval-interval", "10", "--batch-size", "8", "--threads", "1",
    ];

    private static string WriteData(ScratchFolder scratch)
    {
        var directory = scratch.Combine("arith");
        ArithmeticWordProblems.Write(directory, new ArithmeticProblemOptions { TrainQuestions = 120, TestQuestions = 40, Cots = 2 });
        return directory;
    }

    private static void AssertSameRun(StudentMetrics expected, StudentMetrics actual)
    {
        Assert.Equal(expected.Options, actual.Options);
        Assert.Equal(expected.BestStep, actual.BestStep);
        Assert.Equal(expected.ValidationAccuracy, actual.ValidationAccuracy);
        Assert.Equal(expected.TestAccuracy, actual.TestAccuracy);
        Assert.Equal(expected.TestRationaleAccuracy, actual.TestRationaleAccuracy);
        Assert.Equal(expected.Evaluations, actual.Evaluations);
        Assert.Equal(expected.Parameters, actual.Parameters);
        Assert.Equal(expected.DistillationExamples, actual.DistillationExamples);
        Assert.Equal(expected.SelfEvaluationExamples, actual.SelfEvaluationExamples);
        Assert.Equal(expected.Corpus, actual.Corpus);
        Assert.Equal(expected.TrainTokens, actual.TrainTokens);
    }

    [Fact]
    public void The_grid_through_the_cli_gives_every_run_the_metrics_of_a_direct_training_and_writes_the_report()
    {
        using var scratch = new ScratchFolder();
        var data = WriteData(scratch);
        var output = scratch.Combine("grid");
        var store = scratch.Combine("store");
        var (code, stdout, error) = Run(["distill", "grid", "--data", data, "--settings", "standard,cot-se", "--labels", "gt", "--students", "micro",
            "--seeds", "1", .. SmallArgs, "--out", output, "--store", store]);
        Assert.True(code == 0, error);

        var report = StudentGridReport.Load(output);
        Assert.Equal(2, report.Runs.Count);
        Assert.Equal(["standard", "cot-se"], report.Rows.Select(r => r.Setting));
        var corpus = StudentCorpus.Load(data);
        foreach (var run in report.Runs)
        {
            // The grid's base options are the CLI defaults with the arguments above.
            var options = new StudentOptions
            {
                Steps = 20, SelfEvaluationSteps = 10, EvalInterval = 10, BatchSize = 8, Threads = 1,
                Setting = run.Options.Setting, Labels = "gt", Student = "micro", Seed = 1,
            };
            var (direct, _) = StudentTrainer.Train(corpus, options, scratch.Combine("direct-" + run.Options.Setting));
            AssertSameRun(direct, run);
        }
        Assert.Contains("| standard | gt | micro | 20 | 1 |", stdout);
        Assert.Contains("| cot-se | gt | micro | 10 + 20 (extra) | 1 |", File.ReadAllText(Path.Combine(output, StudentGridReport.MarkdownFile)));
        Assert.Contains("<table>", File.ReadAllText(Path.Combine(output, StudentGridReport.HtmlFile)));
        Assert.True(new FileInfo(Path.Combine(output, StudentGridReport.PlotFile)).Length > 1000);
        // The shard results are in the store under the documented shard ids (one document per attempt, jobs/JOB/shards/SHARD/LEASE.json); the checkpoint zips are gone once the results are read.
        var shards = Directory.GetFiles(Directory.GetDirectories(Path.Combine(store, "artifacts", "jobs")).Single(), "*.json", SearchOption.AllDirectories)
            .Select(attempt => Path.GetFileName(Path.GetDirectoryName(attempt))).Order(StringComparer.Ordinal);
        Assert.Equal(["cot-se-gt-micro-s1", "standard-gt-micro-s1"], shards);
        var zips = Path.Combine(store, "artifacts", "distill", "students");
        Assert.Empty(Directory.Exists(zips) ? Directory.GetFiles(zips) : []);
        // The runs trained in the worker's cache folder and removed their work folders when done.
        var work = Path.Combine(store, "cache", "students");
        Assert.True(Directory.Exists(work));
        Assert.Empty(Directory.GetFileSystemEntries(work));
    }

    [Fact]
    public void A_model_folder_student_is_uploaded_and_trains_as_a_direct_run_from_that_folder()
    {
        using var scratch = new ScratchFolder();
        var data = WriteData(scratch);
        var (code, _, error) = Run("distill", "train", "--data", data, "--setting", "standard", "--steps", "10", "--eval-interval", "10", "--batch-size", "8",
            "--threads", "1", "--out", scratch.Combine("pretrained"));
        Assert.True(code == 0, error);
        var model = Path.Combine(scratch.Combine("pretrained"), "model");
        var output = scratch.Combine("grid");
        string stdout;
        (code, stdout, error) = Run(["distill", "grid", "--data", data, "--settings", "cot", "--students", model, "--seeds", "1", .. SmallArgs,
            "--out", output, "--store", scratch.Combine("store")]);
        Assert.True(code == 0, error);

        var report = StudentGridReport.Load(output);
        var run = Assert.Single(report.Runs);
        // Every worker names the student by its artifact key, not by the local copy it trained from.
        Assert.StartsWith("models/", run.Options.Student);
        Assert.StartsWith("model:", run.StudentSource);
        var name = Assert.Single(report.Rows).Student;
        Assert.Matches("^model-[0-9a-f]{8}$", name);
        Assert.Contains($"| cot | gt | {name} | 20 | 1 |", stdout);
        var (direct, _) = StudentTrainer.Train(StudentCorpus.Load(data), run.Options with { Student = model }, scratch.Combine("direct"));
        Assert.Equal(direct.StudentSource, run.StudentSource);
        AssertSameRun(direct with { Options = run.Options }, run);
    }

    private static StudentMetrics Metrics(string setting, string labels, long seed, double test, double validation, double? rationale) => new(
        new StudentOptions { Setting = setting, Labels = labels, Seed = seed }, "preset:micro", 1000, 10, 0, 0, 0, 0, 100, 10, 40, 20, validation, test, rationale,
        [new StudentEvaluation(20, validation)], 5000, 100, "corpus");

    [Fact]
    public void The_report_rows_are_the_naive_mean_and_sample_std_over_seeds_and_the_reading_follows_the_numbers()
    {
        double[] standard = [0.10, 0.20, 0.35];
        double[] full = [0.40, 0.30, 0.65];
        double[] llm = [0.05, 0.15, 0.10];
        var runs = new List<StudentMetrics>();
        for (var s = 0; s < 3; s++) runs.Add(Metrics("standard", "gt", s + 1, standard[s], 0.5 + s, null));
        for (var s = 0; s < 3; s++) runs.Add(Metrics("multi-cot-se", "gt", s + 1, full[s], 0.1 * s, 0.2 * s));
        for (var s = 0; s < 3; s++) runs.Add(Metrics("standard", "llm", s + 1, llm[s], 0, null));
        for (var s = 0; s < 3; s++) runs.Add(Metrics("multi-cot-se", "llm", s + 1, llm[s] - 0.01, 0, 0.5));

        var report = StudentGridReport.From(runs);
        Assert.Equal(4, report.Rows.Count);
        var row = report.Rows.Single(r => r.Setting == "multi-cot-se" && r.Labels == "gt");
        var mean = (0.40 + 0.30 + 0.65) / 3;
        var variance = ((0.40 - mean) * (0.40 - mean) + (0.30 - mean) * (0.30 - mean) + (0.65 - mean) * (0.65 - mean)) / 2;
        Assert.Equal(mean, row.TestAccuracy.Mean, 12);
        Assert.Equal(Math.Sqrt(variance), row.TestAccuracy.Std, 12);
        Assert.Equal((0.0 + 0.1 + 0.2) / 3, row.ValidationAccuracy, 12);
        Assert.Equal((0.0 + 0.2 + 0.4) / 3, row.RationaleAccuracy!.Value, 12);
        Assert.Equal([1L, 2, 3], row.Seeds);
        Assert.Null(report.Rows.Single(r => r.Setting == "standard" && r.Labels == "gt").RationaleAccuracy);

        // gt: 0.45 − 0.2167 = +23.33 points; llm: −1 point; mean +11.17 points, less than the largest std (gt multi-cot-se, 18.0 points).
        var difference = ((mean - standard.Average()) + (-0.01)) / 2 * 100;
        Assert.Contains($"multi-cot-se beats standard fine-tuning by {difference:F1} points of test accuracy averaged over 3 seeds and 2 (labels, student) pairs, within the spread", report.Reading(), StringComparison.OrdinalIgnoreCase);
        var onlyLlm = StudentGridReport.From([.. runs.Where(r => r.Options.Labels == "llm")]);
        Assert.StartsWith("Multi-cot-se does not beat standard fine-tuning (-1.0 points", onlyLlm.Reading());
        var noBaseline = StudentGridReport.From([.. runs.Where(r => r.Options.Setting != "standard")]);
        Assert.Contains("no standard fine-tuning baseline", noBaseline.Reading());

        using var scratch = new ScratchFolder();
        var written = StudentGridReport.Write(scratch.Combine("grid"), runs);
        var loaded = StudentGridReport.Load(scratch.Combine("grid"));
        Assert.Equal(written.Rows.Select(r => (r.Setting, r.Labels, r.TestAccuracy)), loaded.Rows.Select(r => (r.Setting, r.Labels, r.TestAccuracy)));
        var section = loaded.Section("students");
        Assert.Equal(report.Reading(), section.Reading);
        Assert.Equal([Path.Combine("students", StudentGridReport.PlotFile)], section.Images);
        Assert.Contains(new MeanStd(mean, Math.Sqrt(variance)).ToString(), section.TableHtml);
    }

    [Fact]
    public void Bad_grid_parameters_are_refused_with_a_clear_sentence()
    {
        var good = new StudentGridParameters("datasets/abc", _small, ["standard"], ["gt"], ["micro"], [1]);
        var kind = new StudentGridJob(new ServiceCollection().BuildServiceProvider());
        string Error(StudentGridParameters p) => Assert.Throws<UserInputException>(() => kind.Parse(JobParameters.Serialize(p))).Message;

        Assert.Single(StudentGridJob.Runs(kind.Parse(JobParameters.Serialize(good))));
        Assert.Contains("at least one setting", Error(good with { Settings = [] }));
        Assert.Contains("at least one label source", Error(good with { Labels = [] }));
        Assert.Contains("at least one student", Error(good with { Students = [] }));
        Assert.Contains("at least one seed", Error(good with { Seeds = [] }));
        Assert.Contains("Unknown setting 'cot-plus'", Error(good with { Settings = ["standard", "cot-plus"] }));
        Assert.Contains("Unknown label source 'human'", Error(good with { Labels = ["human"] }));
        Assert.Contains("neither a preset", Error(good with { Students = ["huge"] }));
        Assert.Contains("--alpha must lie in [0, 1]", Error(good with { Base = _small with { Alpha = 1.5 } }));
        Assert.Contains("needs a corpus", Error(good with { Corpus = "" }));

        using var scratch = new ScratchFolder();
        var data = WriteData(scratch);
        string[] common = ["distill", "grid", "--data", data, "--out", scratch.Combine("grid"), "--store", scratch.Combine("store"), .. SmallArgs];
        var (code, _, error) = Run([.. common, "--settings", "standard,bogus"]);
        Assert.Equal(2, code);
        Assert.Contains("error: Unknown setting 'bogus'", error);
        (code, _, error) = Run([.. common, "--seeds", "0"]);
        Assert.Equal(2, code);
        Assert.Contains("--seeds must be positive", error);
        (code, _, error) = Run([.. common, "--students", scratch.Combine("no-such-model")]);
        Assert.Equal(2, code);
        Assert.Contains("neither a preset", error);
        (code, _, error) = Run([.. common, "--labels", ","]);
        Assert.Equal(2, code);
        Assert.Contains("--labels needs at least one value", error);
        Assert.False(Directory.Exists(scratch.Combine("grid")));
    }

    [Fact]
    public async Task A_run_whose_local_folder_is_lost_resumes_from_the_store_zip_to_the_metrics_of_an_uninterrupted_run()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(WriteData(scratch));
        var store = new LocalFolderArtifactStore(scratch.Combine("store"));
        var options = _small with { Setting = StudentSettings.CotSelfEvaluation, Seed = 3 };

        var uninterrupted = StudentGridJob.TrainWithCheckpoints(store, "distill/students/whole.zip", corpus, options, scratch.Combine("whole"));

        // Stop after the second checkpoint (stage 1 at step 10, stage 2 at step 10), as a silo dying would, then lose the machine's folder.
        var work = scratch.Combine("run");
        const string key = "distill/students/run.zip";
        using (var stop = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() =>
                StudentGridJob.TrainWithCheckpoints(store, key, corpus, options, work, uploaded: n => { if (n == 2) stop.Cancel(); }, cancellationToken: stop.Token));
        }
        Assert.True(await store.ExistsAsync(key));
        Directory.Delete(work, recursive: true);

        var steps = new List<(int Stage, int Step)>();
        var resumed = StudentGridJob.TrainWithCheckpoints(store, key, corpus, options, work, new SynchronousProgress<StudentProgress>(p =>
        {
            // Steps only; an evaluation at a checkpoint is reported apart, with its accuracy.
            if (p.ValidationAccuracy is null) steps.Add((p.Stage, p.Step));
        }));
        // Only the last ten steps of stage 2 ran again: the run continued from the zipped checkpoint, not from scratch.
        Assert.DoesNotContain(steps, s => s.Stage == 1);
        Assert.Equal(Enumerable.Range(11, 10), steps.Select(s => s.Step));
        AssertSameRun(uninterrupted, resumed);
    }

    [Fact]
    public void Restoring_unpacks_the_zip_only_into_a_missing_folder()
    {
        using var scratch = new ScratchFolder();
        var store = new LocalFolderArtifactStore(scratch.Combine("store"));
        var source = scratch.Combine("source");
        Directory.CreateDirectory(Path.Combine(source, "stage", "best"));
        File.WriteAllText(Path.Combine(source, "stage", "best", "weights.bin"), "step 20");
        File.WriteAllText(Path.Combine(source, "top.json"), "{}");
        FolderCheckpoints.Upload(store, "distill/students/x.zip", source, CancellationToken.None);

        var target = scratch.Combine("target");
        Assert.False(FolderCheckpoints.Restore(store, "distill/students/missing.zip", target, CancellationToken.None));
        Assert.False(Directory.Exists(target));
        Assert.True(FolderCheckpoints.Restore(store, "distill/students/x.zip", target, CancellationToken.None));
        Assert.Equal("step 20", File.ReadAllText(Path.Combine(target, "stage", "best", "weights.bin")));
        Assert.Equal("{}", File.ReadAllText(Path.Combine(target, "top.json")));
        // No temporary folder is left beside it.
        Assert.Equal([target], Directory.GetDirectories(scratch.Path).Where(d => d.StartsWith(target, StringComparison.Ordinal)));

        // A folder already there (this machine ran the shard before) is kept as it is.
        File.WriteAllText(Path.Combine(target, "top.json"), "local");
        Assert.False(FolderCheckpoints.Restore(store, "distill/students/x.zip", target, CancellationToken.None));
        Assert.Equal("local", File.ReadAllText(Path.Combine(target, "top.json")));
    }
}
