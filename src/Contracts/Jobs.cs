using System.Collections.Immutable;

namespace Babel.Contracts;

/// <summary>
/// What a job computes. <see cref="Kind"/> names the job type (e.g. <c>perplexity</c>); <see cref="Parameters"/> is that
/// type's JSON, validated by it before submission. Shards are retried at most <see cref="MaxAttempts"/> times; a lease
/// not renewed within <see cref="LeaseDuration"/> is re-issued to another worker. <see cref="Origin"/> says where the
/// inputs came from; it is not part of what the job computes, so it takes no part in <see cref="SameWork"/>. Parameters
/// over <see cref="InlineParametersLimit"/> bytes (a pruning mask, say) are stored once in the artifact store under
/// <see cref="ParametersArtifact"/>, a key that names their SHA-256, and <see cref="Parameters"/> is then empty: the spec
/// stays small in every lease, status and state write.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record JobSpec(
    [property: Id(0)] string Kind,
    [property: Id(1)] string Parameters,
    [property: Id(2)] int MaxAttempts,
    [property: Id(3)] TimeSpan LeaseDuration,
    [property: Id(4)] JobOrigin? Origin = null,
    [property: Id(5)] string? ParametersArtifact = null)
{
    /// <summary>Parameters longer than this (UTF-8 bytes) travel by reference: <see cref="ParametersArtifact"/>, not inline.</summary>
    public const int InlineParametersLimit = 16 * 1024;

    /// <summary>True when <paramref name="other"/> asks for the same computation (kind, parameters, attempts and lease).</summary>
    public bool SameWork(JobSpec other) =>
        Kind == other.Kind && Parameters == other.Parameters && ParametersArtifact == other.ParametersArtifact && MaxAttempts == other.MaxAttempts && LeaseDuration == other.LeaseDuration;
}

/// <summary>
/// Where a job's inputs came from: the local folder each uploaded artifact key was read from, on the client that first
/// submitted the job. Outputs that name their inputs (e.g. a profile run's manifest) read it, so a result written later by
/// <c>babel result</c> equals the one the waiting command wrote.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record JobOrigin([property: Id(0)] IReadOnlyDictionary<string, string> UploadedFrom)
{
    public static readonly JobOrigin None = new(new Dictionary<string, string>());

    /// <summary>The local folder <paramref name="artifactKey"/> was uploaded from, or null.</summary>
    public string? FolderOf(string artifactKey) => UploadedFrom.GetValueOrDefault(artifactKey);
}

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

/// <summary>What happened to a shard, as <c>babel logs JOB</c> shows it.</summary>
public enum ShardEventKind
{
    Leased,
    Completed,
    Failed,
    LeaseExpired,
    SiloDead,
}

/// <summary>
/// One event of a job's shards, numbered from 1 in the order the job grain recorded it. <see cref="Seconds"/> is the shard's
/// compute time (completions only); <see cref="Error"/> the failure's message.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record ShardEvent(
    [property: Id(0)] long Sequence,
    [property: Id(1)] DateTimeOffset Time,
    [property: Id(2)] string ShardId,
    [property: Id(3)] ShardEventKind Kind,
    [property: Id(4)] string? Worker,
    [property: Id(5)] int Attempt,
    [property: Id(6)] double? Seconds,
    [property: Id(7)] string? Error);

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

/// <summary>One shard as <c>babel status JOB</c> shows it; <see cref="ResultArtifact"/> is the document of the attempt that counted.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardProgress(
    [property: Id(0)] string ShardId,
    [property: Id(1)] ShardPhase Phase,
    [property: Id(2)] int Attempts,
    [property: Id(3)] string? Worker,
    [property: Id(4)] string? Error,
    [property: Id(5)] long Items,
    [property: Id(6)] string? ResultArtifact = null);

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
    [property: Id(16)] double CoordinationSeconds,
    [property: Id(17)] bool InputError = false)
{
    public bool IsFinished => Phase != JobPhase.Running;
}
