using System.Diagnostics;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Storage.Artifacts;
using Babel.UnitTests.Silo;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>
/// Many workers on one silo renewing short leases at once: the renewals must not hold the threads the silo needs to answer
/// them, so no lease expires under a worker that is still running its shard, and the silo keeps answering other calls.
/// </summary>
public class LeaseRenewalTests
{
    private const int Workers = 96;

    [Fact]
    public async Task Ninety_six_workers_renewing_short_leases_keep_every_lease_and_the_silo_answers_meanwhile()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var scratch = new ScratchFolder();
        var kind = new SleepJob(TimeSpan.FromSeconds(3));
        await using var app = await EmbeddedSiloHost.StartAsync(scratch, cpuSlots: Workers, timeout.Token, services => services.AddSingleton<IJobKind>(kind));
        var grains = app.Services.GetRequiredService<IGrainFactory>();
        var jobs = new JobClient(grains, app.Services.GetRequiredService<IArtifactStore>(), app.Services.GetRequiredService<JobKindCatalog>());

        // Renewed every 400 ms: 96 renewals in flight at each period. A lease not renewed within 1.2 s goes to another worker.
        var submitted = await jobs.SubmitAsync(kind, new SleepParameters(Workers), new JobOptions("renewals", MaxAttempts: 5, LeaseDuration: TimeSpan.FromMilliseconds(1200)), timeout.Token);
        var slowest = TimeSpan.Zero;
        var waiting = jobs.WaitAsync(submitted.JobId, null, timeout.Token);
        while (!waiting.IsCompleted)
        {
            var call = Stopwatch.StartNew();
            await grains.GetGrain<IJobRegistryGrain>(0).ListAsync();
            if (call.Elapsed > slowest) slowest = call.Elapsed;
            await Task.Delay(100, timeout.Token);
        }
        var status = await waiting;

        Assert.Equal(JobPhase.Succeeded, status.Phase);
        Assert.Equal(Workers, status.Totals["shards"]);
        var details = (await grains.GetGrain<IJobGrain>("renewals").GetStatusAsync(includeShards: true)).ShardDetails;
        Assert.All(details, shard => Assert.Equal(1, shard.Attempts));
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"a registry call took {slowest.TotalMilliseconds:F0} ms while the workers renewed");
        await app.StopAsync(timeout.Token);
    }

    private sealed record SleepParameters(int Shards);

    /// <summary>Shards that each sleep a fixed time, long against the lease duration.</summary>
    private sealed class SleepJob(TimeSpan sleep) : JobKind<SleepParameters, int, long>
    {
        public override string Name => "renewal-probe";

        protected override Task<IReadOnlyList<Shard<int>>> PlanAsync(SleepParameters parameters, IArtifactResolver artifacts, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<Shard<int>>>([.. Enumerable.Range(0, parameters.Shards).Select(i => new Shard<int>($"s{i}", i, 1))]);

        protected override ShardResult RunShard(ShardContext context, SleepParameters parameters, Shard<int> shard, CancellationToken cancellationToken)
        {
            cancellationToken.WaitHandle.WaitOne(sleep);
            cancellationToken.ThrowIfCancellationRequested();
            return ShardResult.Of(new { shard = shard.Id }, [KeyValuePair.Create("shards", 1L)]);
        }

        public override Task<long> AssembleAsync(FinishedJob<SleepParameters> job, CancellationToken cancellationToken) => Task.FromResult(job.Status.Totals["shards"]);

        public override void Save(long result, string directory) => File.WriteAllText(Path.Combine(directory, "shards.txt"), $"{result}\n");

        public override string Summary(long result) => $"{result} shards";
    }
}
