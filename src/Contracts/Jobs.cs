using System.Collections.Immutable;

namespace Babel.Contracts;

/// <summary>
/// What a job computes. <see cref="Kind"/> names the job type (e.g. <c>perplexity</c>); <see cref="Parameters"/> is that
/// type's JSON, validated by it before submission. Shards are retried at most <see cref="MaxAttempts"/> times; a lease
/// not renewed within <see cref="LeaseDuration"/> is re-issued to another worker.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record JobSpec(
    [property: Id(0)] string Kind,
    [property: Id(1)] string Parameters,
    [property: Id(2)] int MaxAttempts,
    [property: Id(3)] TimeSpan LeaseDuration);

/// <summary>One unit of work of a job's deterministic plan: an id unique in the job, the kind's JSON for the slice, and how many items it covers.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardSpec(
    [property: Id(0)] string ShardId,
    [property: Id(1)] string Parameters,
    [property: Id(2)] long Items);

/// <summary>A shard handed to one worker until <see cref="ExpiresAt"/>; completions must quote <see cref="LeaseId"/>.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardLease(
    [property: Id(0)] string JobId,
    [property: Id(1)] JobSpec Job,
    [property: Id(2)] ShardSpec Shard,
    [property: Id(3)] Guid LeaseId,
    [property: Id(4)] DateTimeOffset ExpiresAt,
    [property: Id(5)] int Attempt);

/// <summary>
/// A finished shard: where its result was written in the artifact store and its exact integer totals, which the job
/// sums once per shard id. <see cref="Seconds"/> is the shard's compute time; <see cref="CoordinationSeconds"/> the
/// worker's time in the engine between the previous shard's compute and this one's (writing the previous result,
/// completing it and leasing this shard).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record ShardOutcome(
    [property: Id(0)] string ShardId,
    [property: Id(1)] Guid LeaseId,
    [property: Id(2)] string ResultArtifact,
    [property: Id(3)] ImmutableSortedDictionary<string, long> Totals,
    [property: Id(4)] string Worker,
    [property: Id(5)] double Seconds,
    [property: Id(6)] double CoordinationSeconds);

public enum JobPhase
{
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

public enum ShardPhase
{
    Pending,
    Leased,
    Done,
    Failed,
}

/// <summary>One shard as <c>babel status JOB</c> shows it.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardProgress(
    [property: Id(0)] string ShardId,
    [property: Id(1)] ShardPhase Phase,
    [property: Id(2)] int Attempts,
    [property: Id(3)] string? Worker,
    [property: Id(4)] string? Error,
    [property: Id(5)] long Items);

/// <summary>A job's progress and, once it succeeded, its exact totals. <see cref="ComputeSeconds"/> and <see cref="CoordinationSeconds"/> sum the workers' compute and engine time of completed shards.</summary>
[GenerateSerializer, Immutable]
public sealed record JobStatus(
    [property: Id(0)] string JobId,
    [property: Id(1)] string Kind,
    [property: Id(2)] JobPhase Phase,
    [property: Id(3)] int Shards,
    [property: Id(4)] int Done,
    [property: Id(5)] int Leased,
    [property: Id(6)] int Failed,
    [property: Id(7)] long Items,
    [property: Id(8)] long ItemsDone,
    [property: Id(9)] double ItemsPerSecond,
    [property: Id(10)] DateTimeOffset Submitted,
    [property: Id(11)] DateTimeOffset? Finished,
    [property: Id(12)] string? Error,
    [property: Id(13)] ImmutableSortedDictionary<string, long> Totals,
    [property: Id(14)] ImmutableArray<ShardProgress> ShardDetails,
    [property: Id(15)] double ComputeSeconds,
    [property: Id(16)] double CoordinationSeconds)
{
    public bool IsFinished => Phase != JobPhase.Running;
}
