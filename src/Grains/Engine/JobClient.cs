using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Babel.Contracts;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Engine;

/// <summary>How a job is submitted: its id (default: derived from the work, so a rerun resumes it), attempt bound and lease.</summary>
public sealed record JobOptions(string? JobId = null, int MaxAttempts = 3, TimeSpan? LeaseDuration = null)
{
    public static readonly TimeSpan DefaultLeaseDuration = TimeSpan.FromMinutes(2);
}

/// <summary>
/// The one client-side entry point of the engine: upload inputs to the artifact store, validate and plan a job with its
/// kind, submit it, follow it to the end, and assemble its typed result. The job id is derived from the work by default,
/// so rerunning the same command resumes (or simply reports) the same job instead of starting over. In a command's embedded
/// silo, <paramref name="served"/> is what its workers serve: the jobs this client submits or waits for.
/// </summary>
public sealed class JobClient(IGrainFactory grains, IArtifactStore store, JobKindCatalog kinds, ServedJobs? served = null)
{
    private readonly Dictionary<string, string> _uploaded = new(StringComparer.Ordinal);

    public JobKindCatalog Kinds => kinds;

    /// <summary>How long one status call may take before it is retried; a call in flight to a silo that dies otherwise waits out the 30 s response timeout.</summary>
    public static readonly TimeSpan StatusCallTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long <c>WaitAsync</c> keeps retrying while no silo answers for the job before it gives up.</summary>
    public static readonly TimeSpan UnreachableLimit = TimeSpan.FromSeconds(60);

    /// <summary>How often <c>WaitAsync</c> asks for the job's status.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    /// <summary><c>KIND-</c> and the first 12 hex digits of the SHA-256 of the kind and parameters.</summary>
    public static string DefaultJobId(string kind, string parameters) =>
        $"{kind}-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(kind + "\n" + parameters)))[..12]}";

    /// <summary>
    /// Uploads a local folder (content-addressed, skipped when already there) and returns its artifact key. When the files
    /// were staged from elsewhere (e.g. one dataset file copied alone), <paramref name="uploadedFrom"/> is the folder they
    /// came from, under the same names: the job's origin records it.
    /// </summary>
    public async Task<string> UploadFolderAsync(string localFolder, string prefix, CancellationToken cancellationToken = default, string? uploadedFrom = null)
    {
        var key = await store.UploadFolderAsync(localFolder, prefix, cancellationToken);
        _uploaded[key] = Path.GetFullPath(uploadedFrom ?? localFolder);
        return key;
    }

    /// <summary>
    /// Validates <paramref name="parameters"/> with <paramref name="kind"/>, plans the job and submits it; returns its id and
    /// status. A job of the same work that already exists is resumed (or reported), never started over.
    /// </summary>
    public async Task<JobStatus> SubmitAsync<TParameters, TShard, TResult>(JobKind<TParameters, TShard, TResult> kind, TParameters parameters,
        JobOptions? options = null, CancellationToken cancellationToken = default)
        where TParameters : class
    {
        options ??= new JobOptions();
        // The parameters travel as JSON: validate what the workers will parse, not the object in hand.
        var json = kind.Serialize(kind.Parse(kind.Serialize(parameters)));
        var origin = new JobOrigin(_uploaded.Where(u => json.Contains(u.Key, StringComparison.Ordinal)).ToDictionary(StringComparer.Ordinal));
        var jobId = JobIds.Require(options.JobId ?? DefaultJobId(kind.Name, json));
        var plan = await ((IJobKind)kind).PlanAsync(json, new UploadedFolders(_uploaded), cancellationToken);
        var spec = await JobParameters.SpecAsync(kind.Name, json, options.MaxAttempts, options.LeaseDuration ?? JobOptions.DefaultLeaseDuration, origin, store, cancellationToken);
        Follow(jobId);
        // Submitting is idempotent: a call lost with a silo that died is simply made again.
        return await RetryAsync(jobId, () => grains.GetGrain<IJobGrain>(jobId).SubmitAsync(spec, plan), cancellationToken);
    }

    /// <summary>Submits, waits for the end and assembles the result: what a waiting command does.</summary>
    public async Task<TResult> RunAsync<TParameters, TShard, TResult>(JobKind<TParameters, TShard, TResult> kind, TParameters parameters,
        JobOptions? options, IProgress<JobStatus>? progress, CancellationToken cancellationToken = default)
        where TParameters : class
    {
        var submitted = await SubmitAsync(kind, parameters, options, cancellationToken);
        progress?.Report(submitted);
        await WaitAsync(submitted.JobId, progress, cancellationToken);
        return await AssembleAsync(kind, submitted.JobId, cancellationToken);
    }

    /// <summary>The typed result of a succeeded job of <paramref name="kind"/>.</summary>
    public async Task<TResult> AssembleAsync<TParameters, TShard, TResult>(JobKind<TParameters, TShard, TResult> kind, string jobId, CancellationToken cancellationToken = default)
        where TParameters : class
    {
        var job = await FinishedAsync(jobId, cancellationToken);
        if (job.Spec.Kind != kind.Name) throw new JobRequestException($"Job {jobId} is a {job.Spec.Kind} job, not {kind.Name}.");
        return await kind.AssembleAsync(kind.Finished(job), cancellationToken);
    }

    /// <summary>Writes a succeeded job's result into <paramref name="directory"/>, as the command that submitted it would have; returns the kind's summary.</summary>
    public async Task<string> SaveResultAsync(string jobId, string directory, CancellationToken cancellationToken = default)
    {
        var job = await FinishedAsync(jobId, cancellationToken);
        return await kinds.Get(job.Spec.Kind).SaveResultAsync(job, directory, cancellationToken);
    }

    /// <summary>Assembles a succeeded job's result without writing it, so a follower ends with the exit code the submitting command would have had.</summary>
    public async Task VerifyAsync(string jobId, CancellationToken cancellationToken = default)
    {
        var job = await FinishedAsync(jobId, cancellationToken);
        await kinds.Get(job.Spec.Kind).AssembleAsync(job, cancellationToken);
    }

    private async Task<FinishedJob> FinishedAsync(string jobId, CancellationToken cancellationToken)
    {
        var grain = grains.GetGrain<IJobGrain>(JobIds.Require(jobId));
        // With the shards: each one's counted document is where its result is read from.
        var status = await RetryAsync(jobId, () => grain.GetStatusAsync(includeShards: true), cancellationToken);
        if (status.Phase != JobPhase.Succeeded)
        {
            throw status.Phase == JobPhase.Running
                ? new JobRequestException($"Job {jobId} is still running ({status.Done}/{status.Shards} shards done); 'babel watch {jobId}' follows it to the end.")
                : new JobFailedException(jobId, status.Phase, status.Error, status.InputError);
        }
        return new FinishedJob(jobId, await JobParameters.InlineAsync(await RetryAsync(jobId, grain.GetSpecAsync, cancellationToken), store, cancellationToken), status, store);
    }

    /// <summary>
    /// Makes an idempotent call to the cluster again while no silo answers it (a silo that died with the call in flight,
    /// the cluster replacing it) for at most <see cref="UnreachableLimit"/>; then the job is reported unreachable.
    /// </summary>
    private static async Task<T> RetryAsync<T>(string jobId, Func<Task<T>> call, CancellationToken cancellationToken)
    {
        var started = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call().WaitAsync(cancellationToken);
            }
            catch (Exception e) when (e is OrleansException or TimeoutException && started.Elapsed < UnreachableLimit)
            {
                await Task.Delay(PollInterval, cancellationToken);
            }
            catch (Exception e) when (e is OrleansException or TimeoutException)
            {
                throw new JobFailedException(jobId,
                    $"no silo answered for job {jobId} within {UnreachableLimit.TotalSeconds:F0} s ({e.Message}); check the cluster, then 'babel watch {jobId}' or rerun the same command to resume the job.");
            }
        }
    }

    /// <summary>
    /// Polls the job until it ends, reporting each status; throws <see cref="JobFailedException"/> when it failed or was
    /// cancelled, or when the cluster did not answer for <see cref="UnreachableLimit"/>. A silo crash is survived: the job's
    /// state is persisted, and a later call reactivates the job on a live silo once the cluster has declared the dead one dead.
    /// </summary>
    public async Task<JobStatus> WaitAsync(string jobId, IProgress<JobStatus>? progress, CancellationToken cancellationToken = default)
    {
        var job = grains.GetGrain<IJobGrain>(JobIds.Require(jobId));
        Follow(jobId);
        while (true)
        {
            var status = await RetryAsync(jobId, () => job.GetStatusAsync(includeShards: false).WaitAsync(StatusCallTimeout, cancellationToken), cancellationToken);
            progress?.Report(status);
            if (status.Phase == JobPhase.Succeeded) return status;
            if (status.IsFinished) throw new JobFailedException(jobId, status.Phase, status.Error, status.InputError);
            await Task.Delay(PollInterval, cancellationToken);
        }
    }

    /// <summary>
    /// Lets the workers of the command's embedded silo run <paramref name="jobId"/> (submitting and waiting do it too); a
    /// cluster's workers serve every job anyway.
    /// </summary>
    public void Follow(string jobId) => served?.Follow(jobId);

    /// <summary>Planning reads the client's own copies of what it just uploaded.</summary>
    private sealed class UploadedFolders(IReadOnlyDictionary<string, string> uploaded) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) =>
            uploaded.TryGetValue(key, out var folder)
                ? Task.FromResult(folder)
                : throw new InvalidOperationException($"Artifact {key} was not uploaded by this client.");
    }
}

/// <summary>A job ended without success (failed, cancelled, or unreachable); the message says why and how to go on.</summary>
public sealed class JobFailedException(string jobId, string message, bool inputError = false) : Exception(message)
{
    public JobFailedException(string jobId, JobPhase phase, string? error, bool inputError = false)
        : this(jobId, phase == JobPhase.Cancelled ? $"job {jobId} was cancelled." : $"job {jobId} failed: {error}", inputError)
    {
    }

    public string JobId { get; } = jobId;

    /// <summary>The job failed because a worker found one of its inputs corrupt or invalid: the user's to fix, like any bad input.</summary>
    public bool InputError { get; } = inputError;
}
