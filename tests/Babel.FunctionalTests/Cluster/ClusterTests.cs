using System.Diagnostics;
using System.Text.Json.Nodes;
using Babel.Silo;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Cluster;

/// <summary>Cluster tests share the CPU-heavy inputs and run one after another: each starts silos that train nothing but run real shards.</summary>
[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<PerplexityInputs>
{
    public const string Name = "Cluster";
}

/// <summary>
/// <c>babel perplexity --cluster</c> against real silo processes and a real Azure Storage emulator, as a user runs it:
/// the result is the embedded single-process result, exactly, whatever was killed or unreachable on the way.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _jobTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan _conditionTimeout = TimeSpan.FromSeconds(60);
    /// <summary>Shards that must be done before a fault is injected, and shards that must still be left.</summary>
    private const int DoneBeforeFault = 10;
    private const int LeftAtFault = 60;

    [Fact]
    public async Task A_job_on_two_silos_gives_the_embedded_result_exactly()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 2);

        var result = await cluster.Cli.RunAsync(_jobTimeout, [.. inputs.Arguments, "--cluster", "--job-id", "two-silos"]);

        Report(result);
        Assert.True(result.ExitCode == 0, result.ToString());
        AssertSameResult(result);
        var status = await StatusAsync(cluster, "two-silos");
        Assert.All(Shards(status), s => Assert.Equal("Done", (string?)s["phase"]));
        // Both silos' workers took part.
        Assert.All(cluster.Silos, silo => Assert.Contains(Shards(status), s => ((string?)s["worker"])!.StartsWith(silo.WorkerPrefix, StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_job_survives_the_SIGKILL_of_the_silo_holding_it_mid_job_with_the_same_result()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 2);
        var run = cluster.Cli.RunAsync(_jobTimeout, [.. inputs.Arguments, "--cluster", "--job-id", "kill"]);

        // The job grain's silo is the one counting completions: kill that one, the harder case (the job's state must be
        // reloaded from storage on the other silo, and its grain directory partition is lost).
        var (victim, doneAtKill) = await WaitForAsync(async () =>
        {
            foreach (var silo in cluster.Silos)
            {
                // The perplexity job's shards (the tokenize job it is planned from runs first, maybe on another silo).
                var done = SiloProcess.Counter(await silo.ScrapeMetricsAsync(), "babel_shards_completed_total", "perplexity");
                if (done >= DoneBeforeFault) return (silo, done);
            }
            return default;
        }, "some shards done");
        Assert.True(doneAtKill <= PerplexityInputs.Shards - LeftAtFault, $"The job was nearly done ({doneAtKill} shards) before the kill; make it longer.");
        victim.Kill();
        var killedAt = Stopwatch.StartNew();
        var survivor = cluster.Silos.Single(s => s != victim);
        output.WriteLine($"killed {victim.Name} (job grain host) after {doneAtKill} shards");

        var result = await run;

        Report(result);
        Assert.True(result.ExitCode == 0, result.ToString());
        AssertSameResult(result);
        // Abandoned leases are re-issued once the silo is declared dead, not after the 2 min lease duration.
        Assert.True(killedAt.Elapsed < TimeSpan.FromSeconds(60), $"The job took {killedAt.Elapsed.TotalSeconds:F0} s after the kill.");
        var status = await StatusAsync(cluster, "kill");
        var shards = Shards(status);
        Assert.All(shards, s => Assert.Equal("Done", (string?)s["phase"]));
        // Shards are leased in plan order and at most one per worker runs at a time, so at least the last
        // LeftAtFault - 2 shards were leased after the kill: the survivor's worker must have done them all.
        Assert.All(shards.TakeLast(LeftAtFault - 2), s => Assert.StartsWith(survivor.WorkerPrefix, (string?)s["worker"]));
        output.WriteLine($"shards retried: {string.Join(", ", shards.Where(s => (int)s["attempts"]! >= 2).Select(s => $"{s["shardId"]} ({s["attempts"]} attempts)"))}");
    }

    [Fact]
    public async Task A_job_survives_a_3_s_storage_outage_with_the_same_result()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 2);
        var run = cluster.Cli.RunAsync(_jobTimeout, [.. inputs.Arguments, "--cluster", "--job-id", "outage"]);

        var doneAtOutage = await WaitForAsync(async () => await cluster.ShardsCompletedAsync("perplexity") is var done && done >= DoneBeforeFault ? done : 0, "some shards done");
        Assert.True(doneAtOutage <= PerplexityInputs.Shards - LeftAtFault, $"The job was nearly done ({doneAtOutage} shards) before the outage; make it longer.");
        await cluster.Azurite.StopAsync();
        await Task.Delay(TimeSpan.FromSeconds(3));
        await cluster.Azurite.StartAsync();
        output.WriteLine($"storage was down for 3 s after {doneAtOutage} shards");

        var result = await run;

        Report(result);
        Assert.True(result.ExitCode == 0, result.ToString());
        AssertSameResult(result);
        Assert.All(Shards(await StatusAsync(cluster, "outage")), s => Assert.Equal("Done", (string?)s["phase"]));
    }

    [Fact]
    public async Task Metrics_show_shards_completing_during_a_job_and_the_Orleans_series()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 2);
        var run = cluster.Cli.RunAsync(_jobTimeout, [.. inputs.Arguments, "--cluster", "--job-id", "metrics"]);

        var first = await WaitForAsync(async () => await cluster.ShardsCompletedAsync("perplexity") is var done && done >= 1 ? done : 0, "a first shard done");
        var second = await WaitForAsync(async () => await cluster.ShardsCompletedAsync("perplexity") is var done && done > first ? done : 0, "more shards done");
        var scrapes = await Task.WhenAll(cluster.Silos.Select(s => s.ScrapeMetricsAsync()));

        Assert.True(second > first);
        // Orleans' own series on every silo; Babel's job counters where the job grain lives.
        Assert.All(scrapes, metrics => Assert.Contains("\norleans_", metrics, StringComparison.Ordinal));
        Assert.Contains(scrapes, metrics => SiloProcess.Counter(metrics, "babel_shards_completed_total", "perplexity") >= second);
        var result = await run;
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal((double)PerplexityInputs.Shards, await cluster.ShardsCompletedAsync("perplexity"));
    }

    [Fact]
    public async Task An_unreachable_cluster_is_one_sentence_and_exit_code_2_in_bounded_time()
    {
        var dead = LoopbackPorts.Free(3);
        var connection = $"DefaultEndpointsProtocol=http;AccountName={Infrastructure.Azurite.AccountName};AccountKey={Infrastructure.Azurite.AccountKey};" +
            $"BlobEndpoint=http://127.0.0.1:{dead[0]}/{Infrastructure.Azurite.AccountName};QueueEndpoint=http://127.0.0.1:{dead[1]}/{Infrastructure.Azurite.AccountName};" +
            $"TableEndpoint=http://127.0.0.1:{dead[2]}/{Infrastructure.Azurite.AccountName};";
        var cli = BabelCli.ForCluster(connection, $"nobody-{Guid.NewGuid():N}", inputs.Folder);

        var result = await cli.RunAsync(TimeSpan.FromSeconds(90), [.. inputs.Arguments, "--cluster"]);

        Report(result);
        AssertOneSentenceError(result);
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(40), $"It took {result.Elapsed.TotalSeconds:F0} s.");
    }

    [Fact]
    public async Task Bad_requests_to_a_live_cluster_are_one_sentence_and_exit_code_2()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 1);

        var missing = await cluster.Cli.RunAsync(_jobTimeout, "status", "NOSUCHJOB", "--cluster");
        Report(missing);
        AssertOneSentenceError(missing);
        Assert.Contains("NOSUCHJOB", missing.Stderr, StringComparison.Ordinal);

        var invalid = await cluster.Cli.RunAsync(_jobTimeout, "perplexity", "--model", inputs.Model, "--corpus", inputs.Corpus, "--documents-per-shard", "0", "--cluster");
        Report(invalid);
        AssertOneSentenceError(invalid);
        Assert.Contains("--documents-per-shard", invalid.Stderr, StringComparison.Ordinal);
    }

    private void AssertSameResult(CliResult result)
    {
        var actual = JsonNode.Parse(result.Stdout);
        // Totals are exact integer sums, so every number, including the derived doubles, must be identical.
        Assert.True(JsonNode.DeepEquals(inputs.Reference, actual), $"The cluster's result differs from the embedded run.\nexpected:\n{inputs.Reference}\nactual:\n{result.Stdout}");
    }

    private static void AssertOneSentenceError(CliResult result)
    {
        Assert.True(result.ExitCode == 2, result.ToString());
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"Expected one 'error: ...' line on stderr.\n{result}");
        // Nothing else anywhere: no log lines, no stack trace.
        Assert.True(result.Stdout.Trim().Length == 0, $"Expected nothing on stdout.\n{result}");
    }

    private static async Task<JsonObject> StatusAsync(LocalCluster cluster, string jobId)
    {
        var status = await cluster.Cli.RunAsync(_jobTimeout, "status", jobId, "--cluster", "--format", "json");
        Assert.True(status.ExitCode == 0, status.ToString());
        return JsonNode.Parse(status.Stdout)!.AsObject();
    }

    private static List<JsonObject> Shards(JsonObject status)
    {
        var shards = status["shardDetails"]!.AsArray().Select(s => s!.AsObject()).ToList();
        Assert.Equal(PerplexityInputs.Shards, shards.Count);
        return shards;
    }

    /// <summary>Polls <paramref name="condition"/> until it returns a non-default value; fails after a bounded wait.</summary>
    private static async Task<T> WaitForAsync<T>(Func<Task<T>> condition, string what)
    {
        var elapsed = Stopwatch.StartNew();
        while (elapsed.Elapsed < _conditionTimeout)
        {
            var value = await condition();
            if (!EqualityComparer<T>.Default.Equals(value, default)) return value;
            await Task.Delay(100);
        }
        throw new TimeoutException($"Waited {_conditionTimeout.TotalSeconds:F0} s for {what}.");
    }

    private void Report(CliResult result) => output.WriteLine($"babel: exit code {result.ExitCode} after {result.Elapsed.TotalSeconds:F1} s\n{ChildProcess.Tail(result.Stderr)}");
}
