using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>A job's persistent state: spec, plan, every shard's progress and the exact totals summed so far.</summary>
[GenerateSerializer]
public sealed class JobRecord
{
    [Id(0)] public JobSpec? Spec { get; set; }
    [Id(1)] public List<ShardSpec> Plan { get; set; } = [];
    [Id(2)] public Dictionary<string, ShardRecord> Shards { get; set; } = [];
    [Id(3)] public JobPhase Phase { get; set; }
    [Id(4)] public DateTimeOffset Submitted { get; set; }
    [Id(5)] public DateTimeOffset? Finished { get; set; }
    [Id(6)] public string? Error { get; set; }
    [Id(7)] public SortedDictionary<string, long> Totals { get; set; } = new(StringComparer.Ordinal);
    [Id(8)] public long ItemsDone { get; set; }
    [Id(9)] public double ComputeSeconds { get; set; }
    [Id(10)] public double CoordinationSeconds { get; set; }
    [Id(11)] public List<ShardEvent> Events { get; set; } = [];
}

/// <summary>One shard's progress; <see cref="IssuedLeases"/> lets a late completion of an earlier lease still count, once.</summary>
[GenerateSerializer]
public sealed class ShardRecord
{
    [Id(0)] public ShardPhase Phase { get; set; }
    [Id(1)] public int Attempts { get; set; }
    [Id(2)] public Guid LeaseId { get; set; }
    [Id(3)] public DateTimeOffset LeaseExpires { get; set; }
    [Id(4)] public string? Worker { get; set; }
    [Id(5)] public string? Error { get; set; }
    [Id(6)] public string? ResultArtifact { get; set; }
    [Id(7)] public HashSet<Guid> IssuedLeases { get; set; } = [];
}
