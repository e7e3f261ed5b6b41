using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.FunctionalTests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Distillation;

/// <summary>
/// <c>babel distill grid --cluster</c> with a silo killed (SIGKILL) in the middle of a student run: the run resumes on the
/// other silo from the checkpoint zip in the artifact store (silos share no folder), and every run ends with the metrics
/// of an uninterrupted embedded grid.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class StudentGridKillTests(ITestOutputHelper output)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);

    private static string[] Args(string data) =>
    [
        "distill", "grid", "--data", data, "--settings", "cot,multi-cot", "--labels", "gt", "--students", "micro", "--seeds", "1",
        "--steps", "60", "--eval-interval", "10", "--batch-size", "8", "--threads", "1", "--lease-seconds", "6",
    ];

    /// <summary>The run folder of a silo with the most stage-2 checkpoints, and how many (0 while a checkpoint is being replaced).</summary>
    private static (string? Run, int Checkpoints) MostAdvanced(SiloProcess silo)
    {
        var students = Path.Combine(silo.CacheFolder, "students");
        if (!Directory.Exists(students)) return (null, 0);
        (string? Run, int Checkpoints) most = (null, 0);
        foreach (var run in Directory.GetDirectories(students))
        {
            var count = Checkpoints(run);
            if (count > most.Checkpoints) most = (Path.GetFileName(run), count);
        }
        return most;
    }

    private static int Checkpoints(string run)
    {
        try
        {
            var file = Path.Combine(run, "stage2-distillation", "evaluations.json");
            return File.Exists(file) ? JsonNode.Parse(File.ReadAllText(file))!.AsArray().Count : 0;
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            // The checkpoint folder is being renamed into place.
            return 0;
        }
    }

    private static IReadOnlyList<JsonNode> Runs(string folder) =>
        [.. JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "results.json")))!["runs"]!.AsArray().Select(r => r!)];

    [Fact]
    public async Task A_grid_survives_the_SIGKILL_of_a_silo_mid_run_with_the_metrics_of_an_uninterrupted_run()
    {
        var folder = Directory.CreateTempSubdirectory("babel-student-grid-").FullName;
        try
        {
            var cli = BabelCli.Standalone(folder);
            var data = Path.Combine(folder, "arith");
            var generated = await cli.RunAsync(_timeout, "data", "arithmetic", "--out", data, "--train", "120", "--test", "40", "--cots", "2");
            Assert.True(generated.ExitCode == 0, generated.ToString());
            var reference = await cli.RunAsync(_timeout, [.. Args(data), "--out", Path.Combine(folder, "reference"), "--store", Path.Combine(folder, "store")]);
            Assert.True(reference.ExitCode == 0, reference.ToString());
            output.WriteLine($"uninterrupted embedded grid: {reference.Elapsed.TotalSeconds:F1} s");

            await using var cluster = await LocalCluster.StartAsync(silos: 2);
            var outFolder = Path.Combine(folder, "cluster");
            var run = cluster.Cli.RunAsync(_timeout, [.. Args(data), "--out", outFolder, "--cluster"]);
            var elapsed = Stopwatch.StartNew();
            // After a run's second checkpoint its first is in the store (the zip is uploaded before training goes on).
            var (victim, victimRun) = await cluster.KillWhenAsync(run, silo => MostAdvanced(silo) is { Checkpoints: >= 2, Run: { } name } ? (true, name) : (false, ""),
                _timeout, "a run reached its second checkpoint");
            output.WriteLine($"killed {victim.Name} in run {victimRun}");

            // The survivor takes the run over once its lease expires: its work folder appears already holding the
            // zipped stage-2 checkpoints (a fresh start would show no stage-2 checkpoint for seconds).
            var survivor = cluster.Silos.Single(s => s != victim);
            var takenOver = Path.Combine(survivor.CacheFolder, "students", victimRun);
            while (!Directory.Exists(takenOver))
            {
                if (run.IsCompleted) Assert.Fail($"The grid ended without the survivor resuming the killed run.\n{await run}");
                Assert.True(elapsed.Elapsed < _timeout, "The killed run was not taken over in time.");
                await Task.Delay(10);
            }
            var restored = Checkpoints(takenOver);
            output.WriteLine($"{survivor.Name} resumed it with {restored} stage-2 checkpoints");
            Assert.True(restored >= 1, "The survivor started the killed run from scratch instead of from its checkpoint in the store.");

            var result = await run;
            Assert.True(result.ExitCode == 0, result.ToString());
            var expected = Runs(Path.Combine(folder, "reference"));
            var actual = Runs(outFolder);
            Assert.Equal(2, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                foreach (var field in new[] { "options", "best_step", "validation_accuracy", "test_accuracy", "test_rationale_accuracy", "evaluations", "parameters", "corpus" })
                {
                    Assert.Equal(expected[i][field]?.ToJsonString(), actual[i][field]?.ToJsonString());
                }
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
