using System.Collections.Immutable;
using Babel.Contracts;
using Babel.Grains;
using Babel.Grains.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.Configuration;
using Orleans.TestingHost;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>A three-silo in-process cluster whose job state lives in a shared local folder, with a fake clock.</summary>
public sealed class JobClusterFixture : IAsyncLifetime
{
    public static readonly FakeTimeProvider Clock = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    public static readonly string StateFolder = Directory.CreateTempSubdirectory("babel-jobstate-").FullName;

    public TestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(3);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        Directory.Delete(StateFolder, recursive: true);
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.Services.AddSingleton<TimeProvider>(Clock);
            siloBuilder.AddLocalFolderGrainStorage(JobGrain.StorageName, StateFolder);
            siloBuilder.Services.AddSingleton<Storage.Journals.IJobJournal>(new Storage.Journals.LocalFolderJobJournal(Path.Combine(StateFolder, "journals")));
            siloBuilder.Services.AddSingleton<Storage.Artifacts.IArtifactStore>(new Storage.Artifacts.LocalFolderArtifactStore(Path.Combine(StateFolder, "artifacts")));
            siloBuilder.AddBabelGrains();
            // Evict a killed silo in about a second instead of Orleans' production default.
            siloBuilder.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
            });
        }
    }
}

[CollectionDefinition(Name)]
public sealed class JobClusterCollection : ICollectionFixture<JobClusterFixture>
{
    public const string Name = "job cluster";
}

[Collection(JobClusterCollection.Name)]
public class JobGrainTests(JobClusterFixture fixture)
{
    private static readonly JobSpec _spec = new("test-kind", "{}", MaxAttempts: 2, LeaseDuration: TimeSpan.FromMinutes(1));
    private static readonly ShardSpec[] _plan = [new("a", "{}", 3), new("b", "{}", 4), new("c", "{}", 5)];

    private IJobGrain NewJob() => fixture.Cluster.Client.GetGrain<IJobGrain>($"job-{Guid.NewGuid():N}");

    private static ShardOutcome Outcome(ShardLease lease, long value) =>
        new(lease.Shard.ShardId, lease.LeaseId, $"jobs/{lease.JobId}/{lease.Shard.ShardId}", ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("x", value)]), "test", 0.1, 0.01);

    [Fact]
    public async Task Shards_are_leased_in_plan_order_and_totals_sum_each_shard_once()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, _plan);
        var leases = new List<ShardLease>();
        for (var i = 0; i < 3; i++) leases.Add((await job.LeaseAsync("w"))!);
        Assert.Equal(["a", "b", "c"], leases.Select(l => l.Shard.ShardId));
        Assert.Null(await job.LeaseAsync("w"));

        Assert.True(await job.CompleteAsync(Outcome(leases[1], 20)));
        Assert.False(await job.CompleteAsync(Outcome(leases[1], 20)));
        Assert.True(await job.CompleteAsync(Outcome(leases[0], 1)));
        var running = await job.GetStatusAsync(includeShards: true);
        Assert.Equal(JobPhase.Running, running.Phase);
        Assert.Equal(21, running.Totals["x"]);
        Assert.Equal(7, running.ItemsDone);
        Assert.Equal(2, running.Done);

        Assert.True(await job.CompleteAsync(Outcome(leases[2], 300)));
        var done = await job.GetStatusAsync(includeShards: false);
        Assert.Equal(JobPhase.Succeeded, done.Phase);
        Assert.Equal(321, done.Totals["x"]);
        Assert.Equal(12, done.ItemsDone);
    }

    [Fact]
    public async Task Completing_and_leasing_in_one_call_sums_the_shards_and_hands_out_the_next()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, _plan);
        var first = (await job.LeaseAsync("w"))!;
        var second = Assert.Single(await job.ExchangeAsync([Outcome(first, 2)], "w", 1));
        Assert.Equal("b", second.Shard.ShardId);
        // A retried call after the first got through completes nothing twice but still leases.
        var third = Assert.Single(await job.ExchangeAsync([Outcome(first, 2)], "w", 1));
        Assert.Equal("c", third.Shard.ShardId);
        Assert.Empty(await job.ExchangeAsync([Outcome(second, 30), Outcome(third, 400)], "w", 4));
        var status = await job.GetStatusAsync(false);
        Assert.Equal(JobPhase.Succeeded, status.Phase);
        Assert.Equal(432, status.Totals["x"]);
    }

    [Fact]
    public async Task A_worker_leases_shards_ahead_in_one_call_and_gets_them_back_if_it_asks_again_holding_them()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, _plan);
        var worker = $"{fixture.Cluster.Primary!.SiloAddress.ToParsableString()}/cpu:0";
        var batch = await job.ExchangeAsync([], worker, 2);
        Assert.Equal(["a", "b"], batch.Select(l => l.Shard.ShardId));
        // It completed the first and dropped the second (its activation restarted): the second comes back, same attempt, then a new one.
        var again = await job.ExchangeAsync([Outcome(batch[0], 1)], worker, 2);
        Assert.Equal(["b", "c"], again.Select(l => l.Shard.ShardId));
        Assert.Equal([1, 1], again.Select(l => l.Attempt));
        Assert.NotEqual(batch[1].LeaseId, again[0].LeaseId);
        Assert.Empty(await job.ExchangeAsync([Outcome(again[0], 2), Outcome(again[1], 3)], worker, 2));
        Assert.Equal(6, (await job.GetStatusAsync(false)).Totals["x"]);
    }

    [Fact]
    public async Task An_expired_lease_is_reissued_and_a_late_completion_still_counts_once()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0]]);
        var first = (await job.LeaseAsync("slow"))!;
        Assert.Null(await job.LeaseAsync("other"));
        JobClusterFixture.Clock.Advance(TimeSpan.FromMinutes(2));
        var second = (await job.LeaseAsync("other"))!;
        Assert.NotEqual(first.LeaseId, second.LeaseId);
        Assert.Equal(2, second.Attempt);
        Assert.False(await job.RenewAsync("a", first.LeaseId));
        Assert.True(await job.RenewAsync("a", second.LeaseId));

        Assert.True(await job.CompleteAsync(Outcome(first, 5)));
        Assert.False(await job.CompleteAsync(Outcome(second, 5)));
        var status = await job.GetStatusAsync(includeShards: false);
        Assert.Equal(JobPhase.Succeeded, status.Phase);
        Assert.Equal(5, status.Totals["x"]);
    }

    [Fact]
    public async Task A_lease_of_a_worker_on_a_dead_silo_is_reissued_without_waiting_for_it_to_expire()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0]]);
        var silo = await fixture.Cluster.StartAdditionalSiloAsync();
        var first = (await job.LeaseAsync($"{silo.SiloAddress.ToParsableString()}/cpu:0"))!;
        await fixture.Cluster.KillSiloAsync(silo);

        // The clock does not move: only the membership declaring the silo dead (about 2 s here) frees the lease.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        ShardLease? second = null;
        while (second is null && DateTime.UtcNow < deadline)
        {
            try
            {
                second = await job.LeaseAsync("other");
            }
            catch (SiloUnavailableException)
            {
                // The job grain may have lived on the killed silo.
            }
            if (second is null) await Task.Delay(200);
        }
        var reissued = second ?? throw new Xunit.Sdk.XunitException("The dead silo's lease was not re-issued within 30 s.");
        Assert.Equal("a", reissued.Shard.ShardId);
        Assert.Equal(2, reissued.Attempt);
        Assert.NotEqual(first.LeaseId, reissued.LeaseId);
    }

    [Fact]
    public async Task A_device_worker_asking_again_resumes_the_shard_it_dropped_without_another_attempt()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, _plan);
        var worker = $"{fixture.Cluster.Primary!.SiloAddress.ToParsableString()}/cpu:0";
        var first = (await job.LeaseAsync(worker))!;
        var again = (await job.LeaseAsync(worker))!;
        Assert.Equal("a", again.Shard.ShardId);
        Assert.Equal(1, again.Attempt);
        Assert.NotEqual(first.LeaseId, again.LeaseId);
        // Another worker is not affected: it gets the next shard.
        Assert.Equal("b", (await job.LeaseAsync("w"))!.Shard.ShardId);
    }

    [Fact]
    public async Task A_completion_quoting_a_lease_never_issued_is_ignored()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0]]);
        var lease = (await job.LeaseAsync("w"))!;
        Assert.False(await job.CompleteAsync(Outcome(lease with { LeaseId = Guid.NewGuid() }, 9)));
        Assert.Empty((await job.GetStatusAsync(false)).Totals);
    }

    [Fact]
    public async Task Failed_attempts_are_retried_up_to_the_bound_then_fail_the_job_with_the_reason()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0], _plan[1]]);
        var first = (await job.LeaseAsync("w"))!;
        await job.FailAsync("a", first.LeaseId, "out of memory");
        var retry = (await job.LeaseAsync("w"))!;
        Assert.Equal("a", retry.Shard.ShardId);
        Assert.Equal(2, retry.Attempt);
        await job.FailAsync("a", retry.LeaseId, "out of memory again");
        var status = await job.GetStatusAsync(includeShards: true);
        Assert.Equal(JobPhase.Failed, status.Phase);
        Assert.Contains("shard a", status.Error, StringComparison.Ordinal);
        Assert.Contains("out of memory again", status.Error, StringComparison.Ordinal);
        Assert.Null(await job.LeaseAsync("w"));
    }

    [Fact]
    public async Task Lease_expiry_counts_against_the_attempt_bound()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0]]);
        await job.LeaseAsync("w1");
        JobClusterFixture.Clock.Advance(TimeSpan.FromMinutes(2));
        await job.LeaseAsync("w2");
        JobClusterFixture.Clock.Advance(TimeSpan.FromMinutes(2));
        Assert.Null(await job.LeaseAsync("w3"));
        var status = await job.GetStatusAsync(false);
        Assert.Equal(JobPhase.Failed, status.Phase);
        Assert.Contains("lease expired", status.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cancelled_job_leases_nothing_and_leaves_the_running_list()
    {
        var jobId = $"job-{Guid.NewGuid():N}";
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>(jobId);
        await job.SubmitAsync(_spec, _plan);
        var registry = fixture.Cluster.Client.GetGrain<IJobRegistryGrain>(0);
        Assert.Contains(jobId, await registry.ListRunningAsync());
        var lease = (await job.LeaseAsync("w"))!;
        await job.CancelAsync();
        Assert.Null(await job.LeaseAsync("w"));
        Assert.False(await job.CompleteAsync(Outcome(lease, 1)));
        Assert.Equal(JobPhase.Cancelled, (await job.GetStatusAsync(false)).Phase);
        Assert.DoesNotContain(jobId, await registry.ListRunningAsync());
        Assert.Contains(jobId, await registry.ListAsync());
    }

    [Fact]
    public async Task Workers_see_the_running_jobs_in_the_order_they_were_submitted()
    {
        // Named against their submission order, so the registry's id order would give the opposite.
        var (first, second) = ($"job-z-{Guid.NewGuid():N}", $"job-a-{Guid.NewGuid():N}");
        var registry = fixture.Cluster.Client.GetGrain<IJobRegistryGrain>(0);
        async Task<string[]> Running() => [.. (await registry.ListRunningAsync()).Where(j => j == first || j == second)];
        await fixture.Cluster.Client.GetGrain<IJobGrain>(first).SubmitAsync(_spec, _plan);
        await fixture.Cluster.Client.GetGrain<IJobGrain>(second).SubmitAsync(_spec, _plan);
        Assert.Equal([first, second], await Running());

        // Rerunning the first job's command submits it again: it keeps its place.
        await fixture.Cluster.Client.GetGrain<IJobGrain>(first).SubmitAsync(_spec, _plan);
        Assert.Equal([first, second], await Running());
    }

    [Fact]
    public async Task Resubmitting_the_same_job_is_idempotent_and_a_different_spec_is_refused()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, _plan);
        await job.LeaseAsync("w");
        var again = await job.SubmitAsync(_spec, _plan);
        Assert.Equal(1, again.Leased);
        await Assert.ThrowsAnyAsync<Exception>(() => job.SubmitAsync(_spec with { MaxAttempts = 5 }, _plan));
    }

    [Fact]
    public async Task Resubmitting_a_job_whose_registration_was_lost_registers_it_again()
    {
        var id = $"job-{Guid.NewGuid():N}";
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>(id);
        var registry = fixture.Cluster.Client.GetGrain<IJobRegistryGrain>(0);
        await job.SubmitAsync(_spec, _plan);
        // As if the first submission stored the job but its registration never reached the registry.
        await registry.MarkFinishedAsync(id);
        Assert.DoesNotContain(id, await registry.ListRunningAsync());
        await job.SubmitAsync(_spec, _plan);
        Assert.Contains(id, await registry.ListRunningAsync());
    }

    [Fact]
    public async Task A_completion_whose_totals_overflow_fails_the_job_and_leaves_the_totals_unchanged()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0], _plan[1]]);
        var first = (await job.LeaseAsync("w"))!;
        var second = (await job.LeaseAsync("w"))!;
        Assert.True(await job.CompleteAsync(Outcome(first, long.MaxValue)));
        var overflowing = Outcome(second, 1) with
        {
            Totals = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("a", 7L), KeyValuePair.Create("x", 1L)]),
        };
        await job.CompleteAsync(overflowing);
        var status = await job.GetStatusAsync(includeShards: true);
        Assert.Equal(JobPhase.Failed, status.Phase);
        Assert.Contains("overflows a 64-bit integer", status.Error, StringComparison.Ordinal);
        Assert.Equal(long.MaxValue, status.Totals["x"]);
        Assert.False(status.Totals.ContainsKey("a"));
        Assert.Equal(1, status.Done);
    }

    [Fact]
    public async Task The_document_of_the_attempt_that_counted_is_the_one_the_job_reads()
    {
        var job = NewJob();
        await job.SubmitAsync(_spec, [_plan[0]]);
        var first = (await job.LeaseAsync("slow"))!;
        JobClusterFixture.Clock.Advance(TimeSpan.FromMinutes(2));
        var second = (await job.LeaseAsync("other"))!;
        var counted = Outcome(second, 5) with { ResultArtifact = ShardArtifacts.AttemptKey(second.JobId, "a", second.LeaseId) };
        Assert.True(await job.CompleteAsync(counted));
        // The slow first attempt finishes late: it wrote its own document and its completion is ignored.
        Assert.False(await job.CompleteAsync(Outcome(first, 5) with { ResultArtifact = ShardArtifacts.AttemptKey(first.JobId, "a", first.LeaseId) }));
        var shard = Assert.Single((await job.GetStatusAsync(includeShards: true)).ShardDetails);
        Assert.Equal(counted.ResultArtifact, shard.ResultArtifact);
        Assert.NotEqual(ShardArtifacts.AttemptKey(first.JobId, "a", first.LeaseId), shard.ResultArtifact);
    }

    [Fact]
    public async Task A_job_resumes_with_its_state_after_the_silo_holding_it_is_killed()
    {
        // Never assume placement: submit jobs until one lives on a silo other than the primary (which holds test membership).
        var management = fixture.Cluster.Client.GetGrain<IManagementGrain>(0);
        IJobGrain job;
        SiloHandle silo;
        while (true)
        {
            var jobId = $"job-{Guid.NewGuid():N}";
            job = fixture.Cluster.Client.GetGrain<IJobGrain>(jobId);
            await job.SubmitAsync(_spec, _plan);
            var statistics = await management.GetDetailedGrainStatistics();
            var host = statistics.Single(s => s.GrainId.ToString().Contains(jobId, StringComparison.Ordinal)).SiloAddress;
            silo = fixture.Cluster.Silos.Single(s => s.SiloAddress.Equals(host));
            if (silo != fixture.Cluster.Primary) break;
            await job.CancelAsync();
        }
        var lease = (await job.LeaseAsync("w"))!;
        Assert.True(await job.CompleteAsync(Outcome(lease, 42)));
        await fixture.Cluster.KillSiloAsync(silo);

        var resumed = await job.GetStatusAsync(includeShards: true);
        Assert.Equal(42, resumed.Totals["x"]);
        Assert.Equal(ShardPhase.Done, resumed.ShardDetails.Single(s => s.ShardId == "a").Phase);
        Assert.Equal("b", (await job.LeaseAsync("w"))!.Shard.ShardId);
        await fixture.Cluster.StartAdditionalSiloAsync();
    }
}
