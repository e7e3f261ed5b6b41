using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.UnitTests.Silo;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>A storage outage is not the shard's fault: a real embedded silo's worker waits and runs the shard again without counting an attempt.</summary>
public class WorkerStorageOutageTests
{
    [Fact]
    public async Task A_shard_that_meets_a_storage_outage_more_often_than_its_attempt_bound_still_succeeds_in_one_attempt()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var scratch = new ScratchFolder();
        var kind = new OutageJob(outages: 4);
        await using var app = await EmbeddedSiloHost.StartAsync(scratch, cpuSlots: 1, timeout.Token, services => services.AddSingleton<IJobKind>(kind));
        var jobs = new JobClient(app.Services.GetRequiredService<IGrainFactory>(), app.Services.GetRequiredService<IArtifactStore>(), app.Services.GetRequiredService<JobKindCatalog>());

        // Two attempts at most: the four outages would fail the job if they counted.
        var submitted = await jobs.SubmitAsync(kind, new OutageParameters(), new JobOptions("storage-outage", MaxAttempts: 2), timeout.Token);
        var status = await jobs.WaitAsync(submitted.JobId, null, timeout.Token);
        Assert.Equal(JobPhase.Succeeded, status.Phase);
        Assert.Equal(2, status.Totals["shards"]);
        var details = (await app.Services.GetRequiredService<IGrainFactory>().GetGrain<IJobGrain>("storage-outage").GetStatusAsync(includeShards: true)).ShardDetails;
        Assert.All(details, shard => Assert.Equal(1, shard.Attempts));
        Assert.Equal(5, kind.RunsOf("s0"));
        Assert.Equal(1, kind.RunsOf("s1"));
        await app.StopAsync(timeout.Token);
    }

    private sealed record OutageParameters(string Name = "outage");

    /// <summary>Two shards; shard s0 meets <c>outages</c> storage outages before it runs through.</summary>
    private sealed class OutageJob(int outages) : JobKind<OutageParameters, int, long>
    {
        private readonly Dictionary<string, int> _runs = [];

        public override string Name => "storage-outage-probe";

        public int RunsOf(string shard)
        {
            lock (_runs) return _runs.GetValueOrDefault(shard);
        }

        protected override Task<IReadOnlyList<Shard<int>>> PlanAsync(OutageParameters parameters, IArtifactResolver artifacts, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<Shard<int>>>([new("s0", 0, 1), new("s1", 1, 1)]);

        protected override ShardResult RunShard(ShardContext context, OutageParameters parameters, Shard<int> shard, CancellationToken cancellationToken)
        {
            int run;
            lock (_runs) run = _runs[shard.Id] = _runs.GetValueOrDefault(shard.Id) + 1;
            if (shard.Id == "s0" && run <= outages) throw new StorageUnavailableException("Could not reach Azure Storage at http://127.0.0.1:1 (a test outage).");
            return ShardResult.Of(new { shard = shard.Id }, [KeyValuePair.Create("shards", 1L)]);
        }

        public override Task<long> AssembleAsync(FinishedJob<OutageParameters> job, CancellationToken cancellationToken) => Task.FromResult(job.Status.Totals["shards"]);

        public override void Save(long result, string directory) => File.WriteAllText(Path.Combine(directory, "shards.txt"), $"{result}\n");

        public override string Summary(long result) => $"{result} shards";
    }
}
