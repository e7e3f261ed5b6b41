using System.Text.Json.Nodes;
using Babel.Modeling.Distillation;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary>
/// The job workflow of both distillation kinds: <c>--no-wait</c>, then <c>babel watch</c>, then <c>babel result --out</c>
/// writes the same bytes as the waiting command does for the same job.
/// </summary>
public class DistillResultTests
{
    /// <summary>Every file under <paramref name="expected"/> is under <paramref name="actual"/> with the same bytes, and no other.</summary>
    internal static void AssertSameFiles(string expected, string actual)
    {
        static List<string> Files(string root) =>
            [.. Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal)];
        var files = Files(expected);
        Assert.NotEmpty(files);
        Assert.Equal(files, Files(actual));
        foreach (var file in files)
        {
            Assert.True(File.ReadAllBytes(Path.Combine(expected, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actual, file))), $"{file} differs");
        }
    }

    /// <summary>Submits <paramref name="args"/> with <c>--no-wait</c>, follows the job with <c>watch</c>, writes it with <c>result</c>; returns the job id.</summary>
    private static string SubmitWatchAndWrite(string[] args, string store, string resultFolder)
    {
        var (code, output, error) = Run([.. args, "--no-wait"]);
        Assert.True(code == 0, error);
        var jobId = output.Trim();
        Assert.Matches("^distill(-grid)?-[0-9a-f]{12}$", jobId);
        (code, output, error) = Run("watch", jobId, "--store", store);
        Assert.True(code == 0, error);
        Assert.Contains("Succeeded", output);
        (code, _, error) = Run("result", jobId, "--out", resultFolder, "--store", store);
        Assert.True(code == 0, error);
        return jobId;
    }

    [Fact]
    public void A_distill_job_followed_with_watch_and_written_by_result_has_the_bytes_of_the_waiting_command()
    {
        using var scratch = new ScratchFolder();
        var (model, _) = JobTestInputs.Write(scratch);
        var dataset = DistillLocalTeacherTests.WriteMathDataset(scratch);
        var store = scratch.Combine("store");
        string[] Args(string output) =>
        [
            "distill", "generate", "--teacher", "local:" + model, "--dataset", "jsonl:" + dataset, "--task", "math", "--cots", "2", "--evals", "1",
            "--max-new-tokens", "6", "--seed", "3", "--questions-per-shard", "2", "--parquet", "--out", output, "--store", store,
        ];
        var submitted = scratch.Combine("not-written");
        var result = scratch.Combine("result");
        var jobId = SubmitWatchAndWrite(Args(submitted), store, result);
        Assert.False(Directory.Exists(submitted));

        // The waiting command of the same inputs is the same job: it finds it done and writes its outputs.
        var waited = scratch.Combine("waited");
        var (code, output, error) = Run(Args(waited));
        Assert.True(code == 0, error);
        Assert.Contains("6 chains of thought", output);
        AssertSameFiles(waited, result);

        var manifest = DistillationManifest.Load(result);
        Assert.Equal(jobId, manifest.Job);
        Assert.Equal(Path.GetFullPath(dataset), manifest.DatasetFile(result));
        Assert.Equal(Path.GetFullPath(model), manifest.Teacher.ModelFolder);
        Assert.Equal(3, manifest.Dataset.QuestionsInFile);
        Assert.True(manifest.WallSeconds > 0);
        Assert.Contains(Babel.Storage.DistillationParquet.CotsFile, manifest.Files);
        Assert.Equal(["q00000.jsonl", "q00001.jsonl"], Directory.GetFiles(Path.Combine(result, "raw")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_student_grid_followed_with_watch_and_written_by_result_has_the_bytes_of_the_waiting_command()
    {
        using var scratch = new ScratchFolder();
        var data = scratch.Combine("arith");
        ArithmeticWordProblems.Write(data, new ArithmeticProblemOptions { TrainQuestions = 120, TestQuestions = 40, Cots = 2 });
        var store = scratch.Combine("store");
        string[] Args(string output) =>
        [
            "distill", "grid", "--data", data, "--settings", "standard", "--labels", "gt", "--students", "micro", "--seeds", "1",
            "--steps", "20", "--eval-interval", "10", "--batch-size", "8", "--threads", "1", "--out", output, "--store", store,
        ];
        var result = scratch.Combine("result");
        var jobId = SubmitWatchAndWrite(Args(scratch.Combine("not-written")), store, result);

        var waited = scratch.Combine("waited");
        var (code, output, error) = Run(Args(waited));
        Assert.True(code == 0, error);
        Assert.Contains("| standard | gt | micro | 20 | 1 |", output);
        AssertSameFiles(waited, result);
        Assert.Equal([StudentGridReport.PlotFile, StudentGridReport.HtmlFile, StudentGridReport.JsonFile, StudentGridReport.MarkdownFile],
            Directory.GetFiles(result).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        var setup = JsonNode.Parse(File.ReadAllText(Path.Combine(result, StudentGridReport.JsonFile)))!["setup"]!;
        Assert.Equal(jobId, (string)setup["job"]!);
        Assert.Equal(Path.GetFullPath(data), (string)setup["data"]!);
        Assert.Equal(Path.Combine(Path.GetFullPath(data), "questions", "test.jsonl"), (string)setup["test"]!);
        Assert.Equal(["micro"], setup["students"]!.AsArray().Select(s => (string)s!));
        Assert.Equal(20, (int)setup["options"]!["steps"]!);
    }
}
