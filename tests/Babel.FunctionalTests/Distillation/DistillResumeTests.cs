using System.Diagnostics;
using System.Text.Json.Nodes;
using Babel.FunctionalTests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Distillation;

/// <summary>
/// <c>babel distill generate</c> as a process, killed (SIGKILL) mid-job and run again: the rerun resumes the same job and its
/// files hold every record exactly once, byte for byte what an uninterrupted run writes.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DistillResumeTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);
    private const int Questions = 12;

    [Fact]
    public async Task A_client_killed_mid_job_resumes_with_no_duplicate_and_no_missing_record()
    {
        var folder = Directory.CreateTempSubdirectory("babel-distill-resume-").FullName;
        try
        {
            var dataset = Path.Combine(folder, "math.jsonl");
            File.WriteAllLines(dataset, Enumerable.Range(1, Questions).Select(i => $$"""{"id": "q{{i:D2}}", "question": "Tom has {{i}} apples and buys {{i}} more. How many apples does he have?", "answer": "{{2 * i}}"}"""));
            string[] Args(string store, string outFolder) =>
            [
                "distill", "generate", "--teacher", "local:" + inputs.Model, "--dataset", "jsonl:" + dataset, "--task", "math",
                "--cots", "2", "--evals", "1", "--max-new-tokens", "24", "--seed", "5", "--questions-per-shard", "1",
                // One row per generation: a sample's tokens then do not depend on which other requests were still uncached.
                "--batch-size", "1", "--lease-seconds", "4", "--store", store, "--out", outFolder,
            ];
            var cli = BabelCli.Standalone(folder);

            var reference = await cli.RunAsync(_timeout, Args(Path.Combine(folder, "reference-store"), Path.Combine(folder, "reference")));
            Assert.True(reference.ExitCode == 0, reference.ToString());
            output.WriteLine($"uninterrupted run: {reference.Elapsed.TotalSeconds:F1} s");

            var store = Path.Combine(folder, "store");
            var outFolder = Path.Combine(folder, "out");
            var raw = Path.Combine(outFolder, "raw");
            using (var run = ChildProcess.Start(BuildOutputs.CliDll, Args(store, outFolder), new Dictionary<string, string?>(), folder, keepWholeOutput: true))
            {
                var elapsed = Stopwatch.StartNew();
                while (!(Directory.Exists(raw) && Directory.GetFiles(raw, "*.jsonl").Length >= 2))
                {
                    Assert.False(run.HasExited, $"The run ended before it could be killed:\n{run.Stderr}");
                    Assert.True(elapsed.Elapsed < _timeout, "No shard finished in time.");
                    await Task.Delay(50);
                }
                run.Kill();
                await run.WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            var doneAtKill = Directory.GetFiles(raw, "*.jsonl").Length;
            output.WriteLine($"killed after {doneAtKill} shards");
            Assert.True(doneAtKill < Questions, "The job was done before the kill; make it longer.");
            Assert.False(File.Exists(Path.Combine(outFolder, "manifest.json")));

            var resumed = await cli.RunAsync(_timeout, Args(store, outFolder));
            Assert.True(resumed.ExitCode == 0, resumed.ToString());
            Assert.Contains("shards (", resumed.Stderr, StringComparison.Ordinal);

            foreach (var file in new[] { "cots.jsonl", "evaluations.jsonl" })
            {
                var lines = File.ReadAllLines(Path.Combine(outFolder, file));
                var ids = lines.Select(l => (string)JsonNode.Parse(l)!["id"]!).ToList();
                Assert.Equal(ids.Count, ids.Distinct().Count());
                Assert.Equal(2 * Questions, ids.Count);
                Assert.Equal(File.ReadAllText(Path.Combine(folder, "reference", file)), File.ReadAllText(Path.Combine(outFolder, file)));
            }
            Assert.Equal(Questions, Directory.GetFiles(raw, "*.jsonl").Length);
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(outFolder, "manifest.json")))!;
            Assert.Equal(2 * Questions, (long)manifest["counts"]!["cots"]!);
            Assert.Equal(2 * Questions, (long)manifest["counts"]!["cots_parsed"]! + (long)manifest["counts"]!["cots_unparseable"]!);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
