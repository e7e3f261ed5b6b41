using Babel.Contracts;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Engine;

/// <summary>A succeeded job as its kind assembles it: id, spec, final status (totals) and the shard documents in the artifact store.</summary>
public class FinishedJob(string jobId, JobSpec spec, JobStatus status, IArtifactStore store)
{
    public string JobId { get; } = jobId;
    public JobSpec Spec { get; } = spec;
    public JobStatus Status { get; } = status;
    public IArtifactStore Store { get; } = store;

    /// <summary>Where the inputs were uploaded from (empty for a job submitted without uploads).</summary>
    public JobOrigin Origin => Spec.Origin ?? JobOrigin.None;

    /// <summary>The job's wall time, from submission to its end, as the job grain recorded them.</summary>
    public double WallSeconds => ((Status.Finished ?? Status.Submitted) - Status.Submitted).TotalSeconds;

    /// <summary>The documents of <paramref name="shardIds"/>, in that order, decoded as <typeparamref name="T"/>.</summary>
    public async Task<IReadOnlyList<T>> ReadShardsAsync<T>(IEnumerable<string> shardIds, CancellationToken cancellationToken)
    {
        var results = new List<T>();
        foreach (var shardId in shardIds) results.Add(JobParameters.Deserialize<T>(await ReadShardBytesAsync(shardId, cancellationToken)));
        return results;
    }

    /// <summary>The document of the attempt of <paramref name="shardId"/> whose totals the job counted.</summary>
    public async Task<byte[]> ReadShardBytesAsync(string shardId, CancellationToken cancellationToken)
    {
        _results ??= Status.ShardDetails.Where(s => s.ResultArtifact is not null).ToDictionary(s => s.ShardId, s => s.ResultArtifact!, StringComparer.Ordinal);
        var reference = _results.GetValueOrDefault(shardId) ?? throw new InvalidOperationException($"Job {JobId} has no counted result for shard {shardId}.");
        var (key, inBatch) = ShardBatch.Parse(reference);
        if (inBatch is null) return await ReadAsync(key, cancellationToken);
        // Shards are read in plan order and a batch holds shards leased together, so the last batch read is usually the next one needed.
        if (_batch is not { } batch || batch.Key != key)
        {
            _batch?.Document.Dispose();
            _batch = batch = (key, System.Text.Json.JsonDocument.Parse(await ReadAsync(key, cancellationToken)));
        }
        return ShardBatch.Read(batch.Document, key, inBatch);
    }

    private async Task<byte[]> ReadAsync(string key, CancellationToken cancellationToken) =>
        await Store.GetBytesAsync(key, cancellationToken) ?? throw new InvalidOperationException($"The result of {key} is missing from the artifact store.");

    private Dictionary<string, string>? _results;
    private (string Key, System.Text.Json.JsonDocument Document)? _batch;
}

/// <summary>A finished job with its parameters parsed by its kind.</summary>
public sealed class FinishedJob<TParameters>(FinishedJob job, TParameters parameters) : FinishedJob(job.JobId, job.Spec, job.Status, job.Store)
{
    public TParameters Parameters { get; } = parameters;
}

/// <summary>Where a worker writes a shard's result in the artifact store, and how a finished job's results are read back.</summary>
public static class ShardArtifacts
{
    /// <summary>The document of one attempt (lease) of a shard: a late duplicate attempt writes its own, never over the counted one.</summary>
    public static string AttemptKey(string jobId, string shardId, Guid leaseId) => $"jobs/{jobId}/shards/{shardId}/{leaseId:N}.json";

    /// <summary>The documents of a batch of shards one worker ran (<see cref="ShardBatch"/>), named by the batch's first lease.</summary>
    public static string BatchKey(string jobId, Guid firstLeaseId) => $"jobs/{jobId}/batches/{firstLeaseId:N}.json";
}

/// <summary>Job and shard ids name folders and files in the artifact store, so they are plain names.</summary>
public static class JobIds
{
    private static readonly System.Text.RegularExpressions.Regex _name = new("^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>True for 1–200 letters, digits and <c>. _ = + -</c>, starting with a letter or digit.</summary>
    public static bool IsValid(string? id) => id is not null && _name.IsMatch(id) && !id.Contains("..", StringComparison.Ordinal);

    /// <summary>Throws <see cref="JobRequestException"/> with one sentence when <paramref name="id"/> is not a valid job id.</summary>
    public static string Require(string? id) => IsValid(id)
        ? id!
        : throw new JobRequestException($"'{id}' is not a valid job id; use 1–200 letters, digits, '.', '_', '=', '+' or '-', starting with a letter or digit.");
}
