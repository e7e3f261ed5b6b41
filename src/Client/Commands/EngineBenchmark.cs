using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Serialization;
using Babel.Grains.Benchmarks;
using Babel.Grains.Engine;
using Babel.Silo;
using Babel.Storage;
using Babel.Storage.Journals;

namespace Babel.Client.Commands;

/// <summary>One run of <c>babel bench engine</c>, as its JSON output names it.</summary>
internal sealed record EngineRun(
    [property: JsonPropertyName("silos")] int Silos,
    [property: JsonPropertyName("workers")] int Workers,
    [property: JsonPropertyName("shards")] int Shards,
    [property: JsonPropertyName("storage")] string Storage,
    [property: JsonPropertyName("wall_seconds")] double WallSeconds,
    [property: JsonPropertyName("completions_per_second")] double CompletionsPerSecond,
    [property: JsonPropertyName("mean_event_ms")] double MeanEventMilliseconds,
    [property: JsonPropertyName("p99_event_ms")] double P99EventMilliseconds,
    [property: JsonPropertyName("state_bytes_per_event")] double StateBytesPerEvent,
    [property: JsonPropertyName("peak_rss_mib")] double PeakResidentMebibytes,
    [property: JsonPropertyName("error"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error = null);

/// <summary>
/// Runs the synthetic <see cref="EngineBenchmarkJob"/> on S silos with W simulated workers (CPU worker slots, split over
/// the silos). Local storage: this process hosts the first silo and S−1 silo processes join it. Azurite: S silo processes
/// in cluster mode on the storage of <c>BABEL_STORAGE_CONNECTION_STRING</c>, and this process is their client.
/// </summary>
internal static class EngineBenchmark
{
    public static async Task<EngineRun> RunAsync(int silos, int workers, int shards, string storage, int sleepMilliseconds, string root, CancellationToken cancellationToken)
    {
        var perSilo = Enumerable.Range(0, silos).Select(i => workers / silos + (i < workers % silos ? 1 : 0)).ToArray();
        var store = Path.Combine(root, $"run-{storage}-{silos}x{workers}-{shards}-{Guid.NewGuid():N}");
        var children = new List<Process>();
        try
        {
            if (storage == "local")
            {
                await using var engine = await EngineConnection.OpenAsync(cluster: false, store, perSilo[0], cancellationToken);
                for (var i = 1; i < silos; i++) children.Add(BenchmarkSilos.Start(Settings(store, perSilo[i], new()
                {
                    ["Babel__Cluster__Mode"] = "Embedded",
                    ["Babel__Cluster__PrimarySiloPort"] = engine.EmbeddedSiloPort!.Value.ToString(CultureInfo.InvariantCulture),
                    ["Babel__Cluster__StateFolder"] = Path.Combine(store, "state"),
                    ["Babel__Cluster__ArtifactFolder"] = Path.Combine(store, "artifacts"),
                })));
                await BenchmarkSilos.WaitForHostsAsync(engine.Grains, silos, children, cancellationToken);
                return await MeasureAsync(engine.Jobs, new LocalFolderJobJournal(Path.Combine(store, "state", "journals")), silos, workers, shards, storage, sleepMilliseconds, cancellationToken);
            }
            var connection = Environment.GetEnvironmentVariable(StorageConnectionString.Key)
                ?? throw new UserInputException($"--storage azurite needs {StorageConnectionString.Key} set to the emulator's connection string (e.g. UseDevelopmentStorage=true).");
            // A cluster and a service of their own per run (the service id scopes the job registry, so no earlier run's
            // unfinished job draws this run's workers), which this process's client joins too.
            var clusterId = $"bench-{Guid.NewGuid():N}"[..20];
            for (var i = 0; i < silos; i++)
                children.Add(BenchmarkSilos.Start(Settings(store, perSilo[i], new() { ["Babel__Cluster__Mode"] = "Cluster", ["Babel__Cluster__ClusterId"] = clusterId, ["Babel__Cluster__ServiceId"] = clusterId })));
            var own = new Dictionary<string, string?> { ["Babel:Cluster:ClusterId"] = clusterId, ["Babel:Cluster:ServiceId"] = clusterId };
            await using (var engine = await EngineConnection.OpenAsync(cluster: true, store, 0, cancellationToken, own))
            {
                await BenchmarkSilos.WaitForHostsAsync(engine.Grains, silos, children, cancellationToken);
                return await MeasureAsync(engine.Jobs, AzureBlobJobJournal.Create(connection, new BabelClusterOptions().JournalContainer), silos, workers, shards, storage, sleepMilliseconds, cancellationToken);
            }
        }
        finally
        {
            await BenchmarkSilos.StopAsync(children);
        }
    }

    private static Dictionary<string, string> Settings(string store, int workers, Dictionary<string, string> settings)
    {
        settings["Babel__Worker__CpuSlots"] = workers.ToString(CultureInfo.InvariantCulture);
        settings["Babel__Worker__ThreadsPerSlot"] = "1";
        settings["Babel__Worker__CacheFolder"] = Path.Combine(store, "cache");
        return settings;
    }

    private static async Task<EngineRun> MeasureAsync(JobClient jobs, IJobJournal journal, int silos, int workers, int shards, string storage, int sleepMilliseconds, CancellationToken cancellationToken)
    {
        var kind = jobs.Kinds.Get<EngineBenchmarkJob>();
        var jobId = $"bench-engine-{Guid.NewGuid():N}";
        var stopwatch = Stopwatch.StartNew();
        await jobs.SubmitAsync(kind, new EngineBenchmarkParameters(shards, sleepMilliseconds), new JobOptions(jobId), cancellationToken);
        await jobs.WaitAsync(jobId, null, cancellationToken);
        var wall = stopwatch.Elapsed.TotalSeconds;
        // Every shard counted exactly once, or the assembly throws.
        await jobs.AssembleAsync(kind, jobId, cancellationToken);
        var journalStatistics = await EngineJournalStatistics.ReadAsync(journal, jobId, cancellationToken);
        using var self = Process.GetCurrentProcess();
        return new EngineRun(silos, workers, shards, storage, wall, journalStatistics.CompletionsPerSecond, journalStatistics.MeanEventMilliseconds,
            journalStatistics.P99EventMilliseconds, journalStatistics.StateBytesPerEvent, self.PeakWorkingSet64 / 1048576.0);
    }
}
