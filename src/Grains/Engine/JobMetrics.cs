using System.Diagnostics.Metrics;

namespace Babel.Grains.Engine;

/// <summary>Babel's job-engine instruments (meter <c>Babel.Jobs</c>), exported on each silo's <c>/metrics</c>.</summary>
public sealed class JobMetrics : IDisposable
{
    public const string MeterName = "Babel.Jobs";
    private readonly Meter _meter;

    public JobMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(MeterName);
        JobsSubmitted = _meter.CreateCounter<long>("babel.jobs.submitted", "{job}", "Jobs submitted.");
        JobsFinished = _meter.CreateCounter<long>("babel.jobs.finished", "{job}", "Jobs finished, by outcome (succeeded, failed, cancelled).");
        ShardsLeased = _meter.CreateCounter<long>("babel.shards.leased", "{shard}", "Shard leases issued, re-issues after expiry included.");
        ShardsCompleted = _meter.CreateCounter<long>("babel.shards.completed", "{shard}", "Shards completed and summed into their job.");
        ShardsFailed = _meter.CreateCounter<long>("babel.shards.failed", "{shard}", "Failed shard attempts, expired leases included.");
        ShardItems = _meter.CreateCounter<long>("babel.shard.items", "{item}", "Items (e.g. documents) processed by completed shards.");
        ShardDuration = _meter.CreateHistogram<double>("babel.shard.duration", "s", "Compute time of a shard on its worker.");
    }

    public Counter<long> JobsSubmitted { get; }
    public Counter<long> JobsFinished { get; }
    public Counter<long> ShardsLeased { get; }
    public Counter<long> ShardsCompleted { get; }
    public Counter<long> ShardsFailed { get; }
    public Counter<long> ShardItems { get; }
    public Histogram<double> ShardDuration { get; }

    public void Dispose() => _meter.Dispose();
}
