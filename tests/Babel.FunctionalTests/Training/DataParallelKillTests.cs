using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Babel.FunctionalTests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Training;

/// <summary>
/// <c>babel pretrain --data-parallel 2 --cluster</c> with the silo of the leader (rank 0) killed (SIGKILL) after a
/// checkpoint. Synchronous: the other rank is told within the step timeout, resumes alone from the checkpoint in the
/// artifact store accumulating both micro-batches, and the job ends with the weights of an uninterrupted run — bit for
/// bit, since one rank adding two micro-batches computes the same float sums as two ranks. DiLoCo (<c>--sync-every 4</c>):
/// a group of fewer replicas would be another run, so the survivor waits for the lost rank, which comes back on a spare
/// silo once its lease expires; both resume from the leader's checkpoint (θ_global, the outer momentum and every rank's
/// AdamW state) and end with the bits of an uninterrupted DiLoCo run.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DataParallelKillTests(ITestOutputHelper output)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(4);

    private static string[] Args(string corpus, string outFolder, int steps, string[] mode) =>
    [
        "pretrain", "--corpus", corpus, "--out", outFolder, "--config", "tiny", "--steps", steps.ToString(CultureInfo.InvariantCulture), "--batch-size", "8",
        "--sequence-length", "64", "--threads", "1", "--checkpoint-interval", "20", "--data-parallel", "2", "--lease-seconds", "8", .. mode,
    ];

    /// <summary>The step of the checkpoint in a silo's leader work folder, 0 when none (or while it is being replaced).</summary>
    private static int LeaderCheckpoint(SiloProcess silo)
    {
        var training = Path.Combine(silo.CacheFolder, "training");
        if (!Directory.Exists(training)) return 0;
        foreach (var state in Directory.GetFiles(training, "trainer.json", SearchOption.AllDirectories))
        {
            try
            {
                // Only the leader writes checkpoints.
                return (int)JsonNode.Parse(File.ReadAllText(state))!["Step"]!;
            }
            catch (Exception e) when (e is IOException or System.Text.Json.JsonException)
            {
                return 0;
            }
        }
        return 0;
    }

    [Fact]
    public Task Killing_the_leaders_silo_mid_run_ends_with_the_weights_of_an_uninterrupted_run() =>
        KillTheLeaderMidRunAsync(silos: 2, steps: 160, mode: [], async (cluster, victim) =>
        {
            // The survivor comes back by rejoining its group (a regroup) or as a retried shard that joins afresh; both end
            // in the same weights, so the regroups are reported, not required.
            var survivor = cluster.Silos.Single(s => s != victim);
            var metrics = await survivor.ScrapeMetricsAsync();
            output.WriteLine($"{survivor.Name}: {SiloProcess.Counter(metrics, "babel_training_regroups_total")} regroup(s)");
            Assert.True(SiloProcess.Counter(metrics, "babel_training_tokens_total") > 0);
        });

    [Fact]
    public Task Killing_the_leaders_silo_mid_DiLoCo_run_ends_with_the_weights_of_an_uninterrupted_DiLoCo_run() =>
        KillTheLeaderMidRunAsync(silos: 3, steps: 120, mode: ["--sync-every", "4"], async (cluster, victim) =>
        {
            // Both live silos trained: the survivor and the spare, which took the lost rank over. The survivor comes back either
            // by rejoining its group (a regroup) or, when its exchange failed with the dead silo, as a retried shard that joins
            // afresh; both end in the same weights, so the regroups are reported, not required.
            foreach (var silo in cluster.Silos.Where(s => s != victim))
            {
                var metrics = await silo.ScrapeMetricsAsync();
                Assert.True(SiloProcess.Counter(metrics, "babel_training_tokens_total") > 0, $"{silo.Name} trained nothing");
                output.WriteLine($"{silo.Name}: {SiloProcess.Counter(metrics, "babel_training_regroups_total")} regroup(s)");
            }
        });

    /// <summary>
    /// An uninterrupted embedded run, then the same run on <paramref name="silos"/> one-worker silos with the leader's silo
    /// killed after its second checkpoint; the result must be the same bytes, losses and history. <paramref name="check"/>
    /// looks at the live silos.
    /// </summary>
    private async Task KillTheLeaderMidRunAsync(int silos, int steps, string[] mode, Func<LocalCluster, SiloProcess, Task> check)
    {
        var folder = Directory.CreateTempSubdirectory("babel-data-parallel-").FullName;
        try
        {
            var cli = BabelCli.Standalone(folder);
            var corpus = Path.Combine(folder, "udhr");
            var data = await cli.RunAsync(_timeout, "data", "udhr", "--out", corpus, "--languages", "eng,fra,deu,spa");
            Assert.True(data.ExitCode == 0, data.ToString());
            var reference = await cli.RunAsync(_timeout, [.. Args(corpus, Path.Combine(folder, "reference"), steps, mode), "--store", Path.Combine(folder, "store")]);
            Assert.True(reference.ExitCode == 0, reference.ToString());
            output.WriteLine($"uninterrupted embedded run of 2 ranks: {reference.Elapsed.TotalSeconds:F1} s");

            await using var cluster = await LocalCluster.StartAsync(silos);
            var outFolder = Path.Combine(folder, "cluster");
            // The same tokenizer as the reference: the comparison is of training, not of two tokenizer trainings.
            var run = cluster.Cli.RunAsync(_timeout, [.. Args(corpus, outFolder, steps, mode), "--tokenizer", Path.Combine(folder, "reference"), "--cluster"]);
            var elapsed = Stopwatch.StartNew();
            // After the leader's second local checkpoint its first is in the store (uploaded before training goes on).
            var (victim, step) = await cluster.KillWhenAsync(run, silo => LeaderCheckpoint(silo) is >= 40 and var s ? (true, s) : (false, 0), _timeout,
                "the leader stored its second checkpoint");
            var killedAt = elapsed.Elapsed;
            output.WriteLine($"killed {victim.Name}, the leader's silo, after its checkpoint of step {step}");

            var result = await run;
            Assert.True(result.ExitCode == 0, result.ToString());
            output.WriteLine($"the job ended {(elapsed.Elapsed - killedAt).TotalSeconds:F1} s after the kill");
            await check(cluster, victim);

            Assert.Equal(File.ReadAllBytes(Path.Combine(folder, "reference", "model.safetensors")), File.ReadAllBytes(Path.Combine(outFolder, "model.safetensors")));
            var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "reference", "training.json")))!;
            var actual = JsonNode.Parse(File.ReadAllText(Path.Combine(outFolder, "training.json")))!;
            Assert.Equal(expected["finalTrainLoss"]!.ToJsonString(), actual["finalTrainLoss"]!.ToJsonString());
            Assert.Equal(expected["heldout"]!.ToJsonString(), actual["heldout"]!.ToJsonString());
            Assert.Equal(steps, File.ReadAllLines(Path.Combine(outFolder, "history.jsonl")).Length);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
