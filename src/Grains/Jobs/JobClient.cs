using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Babel.Contracts;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Jobs;

/// <summary>
/// What a client does with the engine: upload inputs to the artifact store, plan a job with its kind, submit it,
/// and follow it to the end. The job id is derived from the spec by default, so rerunning the same command
/// resumes (or simply reports) the same job instead of starting over.
/// </summary>
public sealed class JobClient(IGrainFactory grains, IArtifactStore store, JobKindCatalog kinds)
{
    private readonly Dictionary<string, string> _uploaded = new(StringComparer.Ordinal);

    public static JobSpec Spec(string kind, string parameters, int maxAttempts = 3, TimeSpan? leaseDuration = null) =>
        new(kind, parameters, maxAttempts, leaseDuration ?? TimeSpan.FromMinutes(2));

    /// <summary><c>KIND-</c> and the first 12 hex digits of the SHA-256 of the kind and parameters.</summary>
    public static string DefaultJobId(JobSpec spec) =>
        $"{spec.Kind}-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(spec.Kind + "\n" + spec.Parameters)))[..12]}";

    /// <summary>Uploads a local folder (content-addressed, skipped when already there) and returns its artifact key.</summary>
    public async Task<string> UploadFolderAsync(string localFolder, string prefix, CancellationToken cancellationToken = default)
    {
        var key = await store.UploadFolderAsync(localFolder, prefix, cancellationToken);
        _uploaded[key] = Path.GetFullPath(localFolder);
        return key;
    }

    public async Task<JobStatus> SubmitAsync(string jobId, JobSpec spec, CancellationToken cancellationToken = default)
    {
        var plan = await kinds.Get(spec.Kind).PlanAsync(spec.Parameters, new UploadedFolders(_uploaded), cancellationToken);
        return await grains.GetGrain<IJobGrain>(jobId).SubmitAsync(spec, plan);
    }

    /// <summary>How long one status call may take before it is retried; a call in flight to a silo that dies otherwise waits out the 30 s response timeout.</summary>
    public static readonly TimeSpan StatusCallTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long <see cref="WaitAsync"/> keeps retrying while no silo answers for the job before it gives up.</summary>
    public static readonly TimeSpan UnreachableLimit = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Polls the job until it ends, reporting each status; throws when it failed or was cancelled, or when the cluster did
    /// not answer for <see cref="UnreachableLimit"/>. A silo crash is survived: the job's state is persisted, and a later call
    /// reactivates the job on a live silo once the cluster has declared the dead one dead.
    /// </summary>
    public async Task<JobStatus> WaitAsync(string jobId, IProgress<JobStatus>? progress, TimeSpan poll, CancellationToken cancellationToken = default)
    {
        var job = grains.GetGrain<IJobGrain>(jobId);
        var sinceLastAnswer = Stopwatch.StartNew();
        while (true)
        {
            JobStatus status;
            try
            {
                status = await job.GetStatusAsync(includeShards: false).WaitAsync(StatusCallTimeout, cancellationToken);
            }
            catch (Exception e) when (e is OrleansException or TimeoutException)
            {
                if (sinceLastAnswer.Elapsed > UnreachableLimit)
                {
                    throw new JobFailedException($"No silo answered for job {jobId} within {UnreachableLimit.TotalSeconds:F0} s ({e.Message}); check the cluster, then rerun the same command to resume the job.");
                }
                await Task.Delay(poll, cancellationToken);
                continue;
            }
            sinceLastAnswer.Restart();
            progress?.Report(status);
            switch (status.Phase)
            {
                case JobPhase.Succeeded:
                    return status;
                case JobPhase.Failed:
                    throw new JobFailedException($"Job {jobId} failed: {status.Error}");
                case JobPhase.Cancelled:
                    throw new JobFailedException($"Job {jobId} was cancelled.");
            }
            await Task.Delay(poll, cancellationToken);
        }
    }

    /// <summary>Planning reads the client's own copies of what it just uploaded.</summary>
    private sealed class UploadedFolders(IReadOnlyDictionary<string, string> uploaded) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) =>
            uploaded.TryGetValue(key, out var folder)
                ? Task.FromResult(folder)
                : throw new InvalidOperationException($"Artifact {key} was not uploaded by this client.");
    }
}

/// <summary>A job ended without success; the message says why.</summary>
public sealed class JobFailedException(string message) : Exception(message);
