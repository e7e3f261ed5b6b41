using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Babel.Grains.Engine;

/// <summary>
/// Babel's job-engine instruments (meter <c>Babel.Jobs</c>), exported on each silo's <c>/metrics</c>. Shard series carry
/// the job's <c>kind</c>; counters of every known kind are exported at zero from the start, so a query never misses a series.
/// </summary>
public sealed class JobMetrics : IDisposable
{
    public const string MeterName = "Babel.Jobs";
    private readonly Meter _meter;
    private readonly ConcurrentDictionary<string, string> _running = new(StringComparer.Ordinal);
    private readonly IReadOnlyList<string> _kinds;

    public JobMetrics(IMeterFactory meters, IEnumerable<IJobKind>? kinds = null)
    {
        _meter = meters.Create(MeterName);
        _kinds = [.. (kinds ?? []).Select(k => k.Name).Distinct(StringComparer.Ordinal)];
        JobsSubmitted = _meter.CreateCounter<long>("babel.jobs.submitted", "{job}", "Jobs submitted.");
        JobsFinished = _meter.CreateCounter<long>("babel.jobs.finished", "{job}", "Jobs finished, by outcome (succeeded, failed, cancelled).");
        ShardsLeased = _meter.CreateCounter<long>("babel.shards.leased", "{shard}", "Shard leases issued, re-issues after expiry included.");
        ShardsCompleted = _meter.CreateCounter<long>("babel.shards.completed", "{shard}", "Shards completed and summed into their job.");
        ShardsFailed = _meter.CreateCounter<long>("babel.shards.failed", "{shard}", "Failed shard attempts, expired leases included.");
        ShardItems = _meter.CreateCounter<long>("babel.shard.items", "{item}", "Items (e.g. documents) processed by completed shards.");
        ShardDuration = _meter.CreateHistogram<double>("babel.shard.duration", "s", "Compute time of a shard on its worker.");
        LeaseRenewals = _meter.CreateCounter<long>("babel.shard.lease_renewals", "{renewal}", "Lease renewals of shards still computing: a long shard renews, a stalled one does not.");
        JobsRunning = _meter.CreateObservableGauge("babel.jobs.running", ObserveRunning, "{job}", "Running jobs whose job grain is active on this silo.");
        foreach (var kind in _kinds)
        {
            var tag = Kind(kind);
            ShardsLeased.Add(0, tag);
            ShardsCompleted.Add(0, tag);
            ShardItems.Add(0, tag);
            LeaseRenewals.Add(0, tag);
        }
    }

    public Counter<long> JobsSubmitted { get; }
    public Counter<long> JobsFinished { get; }
    public Counter<long> ShardsLeased { get; }
    public Counter<long> ShardsCompleted { get; }
    public Counter<long> ShardsFailed { get; }
    public Counter<long> ShardItems { get; }
    public Histogram<double> ShardDuration { get; }
    public Counter<long> LeaseRenewals { get; }
    public ObservableGauge<int> JobsRunning { get; }

    /// <summary>The <c>kind</c> tag of a job's series.</summary>
    public static KeyValuePair<string, object?> Kind(string kind) => new("kind", kind);

    /// <summary>Counts <paramref name="jobId"/> as running on this silo (its job grain is active and the job runs), or no longer.</summary>
    public void SetRunning(string jobId, string kind, bool running)
    {
        if (running) _running[jobId] = kind;
        else _running.TryRemove(jobId, out _);
    }

    private IEnumerable<Measurement<int>> ObserveRunning()
    {
        var counts = _running.Values.GroupBy(k => k, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        foreach (var kind in _kinds.Union(counts.Keys, StringComparer.Ordinal)) yield return new Measurement<int>(counts.GetValueOrDefault(kind), Kind(kind));
    }

    public void Dispose() => _meter.Dispose();
}
