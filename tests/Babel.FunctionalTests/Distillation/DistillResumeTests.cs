using System.Diagnostics;
using System.Text.Json.Nodes;
using Babel.FunctionalTests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Distillation;

/// <summary>
/// <c>babel distill generate</c> as a process: the client killed (SIGKILL) mid-job and run again, or a cluster silo killed
/// mid-job; either way the files hold every record exactly once, byte for byte what an uninterrupted embedded run writes.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DistillResumeTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);
    private const int Questions = 12;

    /// <summary>The dataset and the uninterrupted embedded run every test compares with, made once.</summary>
    private static readonly SemaphoreSlim _referenceLock = new(1, 1);
    private static (string Folder, string Dataset)? _reference;

    private static string[] Args(string model, string dataset, string outFolder) =>
    [
        "distill", "generate", "--teacher", "local:" + model, "--dataset", "jsonl:" + dataset, "--task", "math",
        "--cots", "2", "--evals", "1", "--max-new-tokens", "24", "--seed", "5", "--questions-per-shard", "1",
        // One row per generation: a sample's tokens then do not depend on which other requests were still uncached.
        "--batch-size", "1", "--lease-seconds", "4", "--out", outFolder,
    ];

    private async Task<(string Folder, string Dataset)> ReferenceAsync()
    {
        await _referenceLock.WaitAsync();
        try
        {
            if (_reference is { } done) return done;
            // Inside the collection's input folder, which the fixture deletes at the end.
            var folder = Directory.CreateDirectory(Path.Combine(inputs.Folder, "distill-reference")).FullName;
            var dataset = Path.Combine(folder, "math.jsonl");
            File.WriteAllLines(dataset, Enumerable.Range(1, Questions).Select(i => $$"""{"id": "q{{i:D2}}", "question": "Tom has {{i}} apples and buys {{i}} more. How many apples does he have?", "answer": "{{2 * i}}"}"""));
            var reference = await BabelCli.Standalone(folder).RunAsync(_timeout, [.. Args(inputs.Model, dataset, Path.Combine(folder, "reference")), "--store", Path.Combine(folder, "store")]);
            Assert.True(reference.ExitCode == 0, reference.ToString());
            output.WriteLine($"uninterrupted embedded run: {reference.Elapsed.TotalSeconds:F1} s");
            _reference = (folder, dataset);
            return (folder, dataset);
        }
        finally
        {
            _referenceLock.Release();
        }
    }

    private static void AssertSameRecords(string referenceFolder, string outFolder)
    {
        foreach (var file in new[] { "cots.jsonl", "evaluations.jsonl" })
        {
            var lines = File.ReadAllLines(Path.Combine(outFolder, file));
            var ids = lines.Select(l => (string)JsonNode.Parse(l)!["id"]!).ToList();
            Assert.Equal(ids.Count, ids.Distinct().Count());
            Assert.Equal(2 * Questions, ids.Count);
            Assert.Equal(File.ReadAllText(Path.Combine(referenceFolder, "reference", file)), File.ReadAllText(Path.Combine(outFolder, file)));
        }
        Assert.Equal(Questions, Directory.GetFiles(Path.Combine(outFolder, "raw"), "*.jsonl").Length);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(outFolder, "manifest.json")))!;
        Assert.Equal(2 * Questions, (long)manifest["counts"]!["cots"]!);
        Assert.Equal(2 * Questions, (long)manifest["counts"]!["cots_parsed"]! + (long)manifest["counts"]!["cots_unparseable"]!);
    }

    [Fact]
    public async Task A_client_killed_mid_job_resumes_with_no_duplicate_and_no_missing_record()
    {
        var (referenceFolder, dataset) = await ReferenceAsync();
        var folder = Directory.CreateTempSubdirectory("babel-distill-resume-").FullName;
        try
        {
            var cli = BabelCli.Standalone(folder);
            var outFolder = Path.Combine(folder, "out");
            var store = Path.Combine(folder, "store");
            string[] args = [.. Args(inputs.Model, dataset, outFolder), "--store", store];
            // The shard results in the embedded store: the job's progress, whatever the client has written.
            var jobs = Path.Combine(store, "artifacts", "jobs");
            // jobs/JOB/shards/SHARD/ATTEMPT.json: a shard with a document is done, whatever number of attempts wrote one.
            int ShardsDone() => Directory.Exists(jobs)
                ? Directory.GetFiles(jobs, "*.json", SearchOption.AllDirectories)
                    .Select(f => Path.GetDirectoryName(f)!)
                    .Where(shard => Path.GetFileName(Path.GetDirectoryName(shard)) == "shards")
                    .Distinct().Count()
                : 0;
            using (var run = ChildProcess.Start(BuildOutputs.CliDll, args, new Dictionary<string, string?>(), folder, keepWholeOutput: true))
            {
                var elapsed = Stopwatch.StartNew();
                while (ShardsDone() < 2)
                {
                    Assert.False(run.HasExited, $"The run ended before it could be killed:\n{run.Stderr}");
                    Assert.True(elapsed.Elapsed < _timeout, "No shard finished in time.");
                    await Task.Delay(50);
                }
                run.Kill();
                await run.WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            var doneAtKill = ShardsDone();
            output.WriteLine($"killed the client after {doneAtKill} shards");
            Assert.True(doneAtKill < Questions, "The job was done before the kill; make it longer.");
            Assert.False(File.Exists(Path.Combine(outFolder, "manifest.json")));

            var resumed = await cli.RunAsync(_timeout, args);
            Assert.True(resumed.ExitCode == 0, resumed.ToString());
            AssertSameRecords(referenceFolder, outFolder);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task A_cluster_job_survives_the_SIGKILL_of_the_silo_holding_it_with_the_same_records()
    {
        var (referenceFolder, dataset) = await ReferenceAsync();
        await using var cluster = await LocalCluster.StartAsync(silos: 2);
        var outFolder = Path.Combine(cluster.WorkingDirectory, "out");
        var run = cluster.Cli.RunAsync(_timeout, [.. Args(inputs.Model, dataset, outFolder), "--cluster", "--job-id", "distill-kill"]);

        SiloProcess? victim = null;
        var elapsed = Stopwatch.StartNew();
        while (victim is null)
        {
            Assert.False(run.IsCompleted, "The job ended before a silo could be killed; make it longer.");
            Assert.True(elapsed.Elapsed < _timeout, "No shard finished in time.");
            foreach (var silo in cluster.Silos)
            {
                // The job grain's silo counts completions: killing it is the harder case (its state is reloaded elsewhere).
                if (SiloProcess.Counter(await silo.ScrapeMetricsAsync(), "babel_shards_completed_total") >= 2) victim = silo;
            }
            if (victim is null) await Task.Delay(50);
        }
        victim.Kill();
        output.WriteLine($"killed {victim.Name}");

        var result = await run;
        Assert.True(result.ExitCode == 0, result.ToString());
        AssertSameRecords(referenceFolder, outFolder);
    }
}
