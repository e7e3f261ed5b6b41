using System.Collections.Immutable;
using System.Text;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>The job grain's persistence: a header, a plan written once, and shard events appended to a journal.</summary>
[Collection(JobClusterCollection.Name)]
public class JobJournalTests(JobClusterFixture fixture)
{
    private static readonly JobSpec _spec = new("test-kind", "{}", MaxAttempts: 2, LeaseDuration: TimeSpan.FromMinutes(1));

    private static ShardSpec[] Plan(int shards) => [.. Enumerable.Range(0, shards).Select(i => new ShardSpec($"s{i:D6}", "{\"slice\":" + i + "}", 1))];

    private static ShardOutcome Outcome(ShardLease lease, long value) =>
        new(lease.Shard.ShardId, lease.LeaseId, $"jobs/{lease.JobId}/{lease.Shard.ShardId}", ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("x", value)]), "w", 0.1, 0.01);

    private static long Bytes(string folder) => Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length) : 0;

    private static string JournalFolder(string jobId) => Path.Combine(JobClusterFixture.StateFolder, "journals", jobId, "journal");

    /// <summary>The job grain's own state file (its header): state "job" of the local folder grain storage.</summary>
    private static long HeaderBytes(string jobId) =>
        Directory.EnumerateFiles(Path.Combine(JobClusterFixture.StateFolder, "job"), $"*{jobId}.json", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    /// <summary>Runs <paramref name="rounds"/> lease-and-complete rounds; returns the journal and header bytes they added.</summary>
    private async Task<(double JournalBytesPerEvent, long Header)> MeasureAsync(int shards, int rounds)
    {
        var jobId = $"job-{Guid.NewGuid():N}";
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>(jobId);
        await job.SubmitAsync(_spec, Plan(shards));
        var header = HeaderBytes(jobId);
        var before = Bytes(JournalFolder(jobId));
        for (var i = 0; i < rounds; i++) Assert.True(await job.CompleteAsync(Outcome((await job.LeaseAsync("w"))!, 1)));
        Assert.Equal(header, HeaderBytes(jobId));
        return ((Bytes(JournalFolder(jobId)) - before) / (2.0 * rounds), header);
    }

    [Fact]
    public async Task A_shard_event_writes_the_same_bytes_in_a_job_of_ten_shards_and_one_of_ten_thousand()
    {
        var (small, smallHeader) = await MeasureAsync(10, 8);
        var (large, largeHeader) = await MeasureAsync(10_000, 8);
        Assert.InRange(large, small - 4, small + 4);
        Assert.InRange(large, 50, 400);
        // The header does not hold the plan: it is the same size whatever the job's size.
        Assert.InRange(largeHeader, 1, smallHeader + 16);
    }

    [Fact]
    public async Task A_job_reactivated_from_its_journal_keeps_its_totals_and_its_live_leases()
    {
        var jobId = $"job-{Guid.NewGuid():N}";
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>(jobId);
        await job.SubmitAsync(_spec, Plan(4));
        var done = (await job.LeaseAsync("w"))!;
        Assert.True(await job.CompleteAsync(Outcome(done, 40)));
        var live = (await job.LeaseAsync("w"))!;

        await fixture.Cluster.Client.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);

        var status = await job.GetStatusAsync(includeShards: true);
        Assert.Equal(40, status.Totals["x"]);
        Assert.Equal(1, status.Done);
        Assert.Equal(1, status.Leased);
        // The worker still computing its shard renews and completes it against the restored lease; nobody else gets it.
        Assert.True(await job.RenewAsync(live.Shard.ShardId, live.LeaseId));
        var next = (await job.LeaseAsync("other"))!;
        Assert.NotEqual(live.Shard.ShardId, next.Shard.ShardId);
        Assert.True(await job.CompleteAsync(Outcome(live, 2)));
        Assert.Equal(42, (await job.GetStatusAsync(false)).Totals["x"]);
        var events = await job.GetEventsAsync(0, 100);
        Assert.Equal([ShardEventKind.Leased, ShardEventKind.Completed, ShardEventKind.Leased, ShardEventKind.Leased, ShardEventKind.Completed], events.Select(e => e.Kind));
        Assert.Equal([1L, 2, 3, 4, 5], events.Select(e => e.Sequence));
        Assert.Equal(events.Skip(2).Take(3).Select(e => e.Sequence), (await job.GetEventsAsync(2, 3)).Select(e => e.Sequence));
    }

    [Fact]
    public async Task A_plan_altered_in_the_job_store_stops_the_job_with_one_sentence()
    {
        var jobId = $"job-{Guid.NewGuid():N}";
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>(jobId);
        await job.SubmitAsync(_spec, Plan(3));
        var plan = Path.Combine(JobClusterFixture.StateFolder, "journals", jobId, "plan.json");
        File.WriteAllText(plan, File.ReadAllText(plan).Replace("s000002", "s000009", StringComparison.Ordinal));
        await fixture.Cluster.Client.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => job.GetStatusAsync(false));
        Assert.Contains($"The plan of job {jobId}", error.Message, StringComparison.Ordinal);
        Assert.Contains("SHA-256", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Parameters_over_16_KB_travel_by_reference_and_an_altered_copy_is_refused()
    {
        using var scratch = new ScratchFolder();
        var store = new LocalFolderArtifactStore(scratch.Combine("artifacts"));
        var small = await JobParameters.SpecAsync("k", "{\"a\":1}", 3, TimeSpan.FromMinutes(1), JobOrigin.None, store, CancellationToken.None);
        Assert.Null(small.ParametersArtifact);
        Assert.Equal("{\"a\":1}", small.Parameters);

        var json = "{\"mask\":\"" + new string('1', 40_000) + "\"}";
        var large = await JobParameters.SpecAsync("k", json, 3, TimeSpan.FromMinutes(1), JobOrigin.None, store, CancellationToken.None);
        Assert.Equal("", large.Parameters);
        Assert.NotNull(large.ParametersArtifact);
        Assert.Equal(json, (await JobParameters.InlineAsync(large, store, CancellationToken.None)).Parameters);
        // The grain keeps the small spec.
        var job = fixture.Cluster.Client.GetGrain<IJobGrain>($"job-{Guid.NewGuid():N}");
        await job.SubmitAsync(large, Plan(1));
        Assert.True(large.SameWork(await job.GetSpecAsync()));

        await store.PutBytesAsync(large.ParametersArtifact!, Encoding.UTF8.GetBytes(json.Replace('1', '0')));
        var altered = await Assert.ThrowsAsync<UserInputException>(() => JobParameters.InlineAsync(large, store, CancellationToken.None));
        Assert.Contains("do not match their SHA-256", altered.Message, StringComparison.Ordinal);
        await store.DeleteAsync(large.ParametersArtifact!);
        var missing = await Assert.ThrowsAsync<UserInputException>(() => JobParameters.InlineAsync(large, store, CancellationToken.None));
        Assert.Contains("missing from the artifact store", missing.Message, StringComparison.Ordinal);
    }
}
