using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// <c>babel profile --cluster</c> on three real silo processes, one of them killed mid-run: <c>activations.json</c> is
/// byte-identical to the embedded single-process run.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ProfileClusterTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task A_profile_on_three_silos_with_one_killed_mid_run_is_byte_identical_to_the_embedded_run()
    {
        // A model folder of this test's own, with its expert partition.
        var model = Path.Combine(inputs.Folder, "profile-model");
        CopyFolder(inputs.Model, model);
        var standalone = BabelCli.Standalone(inputs.Folder);
        var moefy = await standalone.RunAsync(_timeout, "moefy", "--model", model, "--experts", "8", "--seed", "3");
        Assert.True(moefy.ExitCode == 0, moefy.ToString());

        // Short windows and one window per shard: hundreds of shards, so the kill lands mid-run.
        string[] Arguments(string run) => ["profile", "--model", model, "--corpus", inputs.Corpus, "--rule", "topk:2", "--sequence-length", "32", "--shard-tokens", "32", "--out", Path.Combine(inputs.Folder, run)];
        var embedded = await standalone.RunAsync(_timeout, [.. Arguments("embedded"), "--store", Path.Combine(inputs.Folder, "profile-store")]);
        Assert.True(embedded.ExitCode == 0, embedded.ToString());

        await using var cluster = await LocalCluster.StartAsync(silos: 3);
        var run = cluster.Cli.RunAsync(_timeout, [.. Arguments("cluster"), "--cluster", "--job-id", "profile-kill"]);
        SiloProcess? victim = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (victim is null && DateTime.UtcNow < deadline && !run.IsCompleted)
        {
            foreach (var silo in cluster.Silos)
            {
                if (SiloProcess.Counter(await silo.ScrapeMetricsAsync(), "babel_shards_completed_total") >= 20) victim = silo;
            }
            await Task.Delay(50);
        }
        Assert.NotNull(victim);
        Assert.False(run.IsCompleted, "The profile ended before the kill; make it longer.");
        victim!.Kill();
        output.WriteLine($"killed {victim.Name}");

        var result = await run;
        Assert.True(result.ExitCode == 0, result.ToString());
        var expected = await File.ReadAllBytesAsync(Path.Combine(inputs.Folder, "embedded", "activations.json"));
        var actual = await File.ReadAllBytesAsync(Path.Combine(inputs.Folder, "cluster", "activations.json"));
        Assert.True(expected.AsSpan().SequenceEqual(actual), "activations.json differs between the embedded run and the cluster run with a killed silo.");
        Assert.True(File.Exists(Path.Combine(inputs.Folder, "cluster", "report.html")));
        Assert.True(File.Exists(Path.Combine(inputs.Folder, "cluster", "heatmaps.png")));
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }
}
