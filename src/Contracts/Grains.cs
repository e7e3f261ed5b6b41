namespace Babel.Contracts;

/// <summary>
/// One job, keyed by job id: holds the spec and the shard plan in persistent state, leases shards to workers,
/// sums each shard's totals exactly once, retries failed shards up to a bound, and can be cancelled.
/// Every method is idempotent, because a call abandoned at a silo crash may still run later.
/// </summary>
public interface IJobGrain : IGrainWithStringKey
{
    /// <summary>
    /// Stores the spec and plan and registers the job; resubmitting the same work (<see cref="JobSpec.SameWork"/>) and plan
    /// returns the current status (registering it again if that had failed), different work is refused.
    /// </summary>
    Task<JobStatus> SubmitAsync(JobSpec spec, IReadOnlyList<ShardSpec> plan);

    /// <summary>The next pending shard, or a shard whose lease expired; null when none is available now.</summary>
    Task<ShardLease?> LeaseAsync(string worker);

    /// <summary>Extends a live lease; false when the lease is no longer this worker's (expired and re-issued, done, or the job ended).</summary>
    Task<bool> RenewAsync(string shardId, Guid leaseId);

    /// <summary>Records a finished shard; false for a duplicate or a stale lease, whose totals are ignored.</summary>
    Task<bool> CompleteAsync(ShardOutcome outcome);

    /// <summary>
    /// A worker's usual call between shards: records <paramref name="completed"/> (as <see cref="CompleteAsync"/>) and leases
    /// up to <paramref name="want"/> shards ahead (as <see cref="LeaseAsync"/>), in one turn and one journal append. A device
    /// worker asking while it still holds leases it did not complete gets those back first (it dropped them).
    /// </summary>
    Task<IReadOnlyList<ShardLease>> ExchangeAsync(IReadOnlyList<ShardOutcome> completed, string worker, int want);

    /// <summary>
    /// Records a failed attempt; the shard is retried until the job's attempt bound, then the job fails with
    /// <paramref name="error"/>. An <paramref name="inputError"/> (a corrupt or invalid input, which no retry mends) fails
    /// the job at once, and the job reports it as such.
    /// </summary>
    Task FailAsync(string shardId, Guid leaseId, string error, bool inputError = false);

    Task<JobStatus> GetStatusAsync(bool includeShards);

    /// <summary>The spec the job was submitted with.</summary>
    Task<JobSpec> GetSpecAsync();

    /// <summary>Up to <paramref name="max"/> shard events with a sequence number above <paramref name="after"/>, oldest first.</summary>
    Task<IReadOnlyList<ShardEvent>> GetEventsAsync(long after, int max);

    Task CancelAsync();
}

/// <summary>The cluster's list of jobs (a single activation, key 0), so workers find work and <c>babel status</c> lists jobs.</summary>
public interface IJobRegistryGrain : IGrainWithIntegerKey
{
    Task RegisterAsync(string jobId);

    /// <summary>Marks a job finished so workers stop asking it for shards.</summary>
    Task MarkFinishedAsync(string jobId);

    Task<IReadOnlyList<string>> ListAsync();

    Task<IReadOnlyList<string>> ListRunningAsync();
}

/// <summary>A compute device's status as its worker reports it.</summary>
[GenerateSerializer, Immutable]
public sealed record WorkerStatus(
    [property: Id(0)] string Worker,
    [property: Id(1)] string Device,
    [property: Id(2)] int Threads,
    [property: Id(3)] string? CurrentJob,
    [property: Id(4)] string? CurrentShard,
    [property: Id(5)] long ShardsCompleted,
    [property: Id(6)] IReadOnlyList<string> LoadedModels);

/// <summary>
/// One compute device of one silo (<c>cuda:N</c>, or a CPU slot <c>cpu:N</c>), keyed by <c>SILO/DEVICE</c> and placed on that
/// silo. It pulls shards from running jobs and runs them on a dedicated thread, never inside a grain turn.
/// </summary>
public interface IDeviceWorkerGrain : IGrainWithStringKey
{
    /// <summary>Starts the pulling loop if it is not running (called by the silo at start).</summary>
    Task StartAsync(int threads);

    Task<WorkerStatus> GetStatusAsync();
}
