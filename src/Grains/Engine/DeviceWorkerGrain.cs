using System.Diagnostics;
using Babel.Contracts;
using Babel.Modeling.Checkpoints;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Engine;

/// <summary>
/// One compute device of one silo. Its loop runs on a dedicated thread, outside the Orleans scheduler: it asks the
/// registry for running jobs, leases a shard, runs it (renewing the lease meanwhile), writes the result to the
/// artifact store and reports completion. Every call is retried with a short timeout; the job grain's idempotence
/// makes retries safe.
/// </summary>
[SiloPinnedPlacement]
public sealed class DeviceWorkerGrain(
    IGrainFactory grains,
    IArtifactStore store,
    JobKindCatalog kinds,
    ServedJobs served,
    IOptions<WorkerOptions> options,
    IHostApplicationLifetime lifetime,
    ILogger<DeviceWorkerGrain> logger) : Grain, IDeviceWorkerGrain
{
    private readonly WorkerOptions _options = options.Value;
    private readonly CancellationTokenSource _stop = new();
    private readonly ModelReplicas _models = new();
    private readonly Dictionary<string, string> _parameters = new(StringComparer.Ordinal);
    // Leases granted and not yet run, all of one job, in order; the outcomes of those run and not yet reported.
    private readonly Queue<ShardLease> _leases = new();
    private readonly List<(string JobId, ShardOutcome Outcome, byte[] Document)> _completed = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, bool> _lost = new();
    // This worker's recent time per shard (compute and result write) of its current job, which sizes its batches.
    private double? _shardSeconds;
    private Thread? _thread;
    private int _threads = 1;
    private volatile string? _currentJob;
    private volatile string? _currentShard;
    private long _shardsCompleted;
    // When the worker last stopped computing (or started asking for work): the start of the engine time the next shard reports.
    private long _coordinationStart;

    private string WorkerId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // A worker lives as long as its silo.
        DelayDeactivation(TimeSpan.FromDays(365 * 10));
        return Task.CompletedTask;
    }

    public Task StartAsync(int threads)
    {
        if (_thread is null)
        {
            // Stop asking for work as soon as the host begins to stop, not once the silo has half shut down under the loop.
            lifetime.ApplicationStopping.Register(_stop.Cancel);
            _threads = Math.Max(1, threads);
            _thread = new Thread(Run) { IsBackground = true, Name = $"babel-worker {SiloPinnedPlacementDirector.DeviceOf(WorkerId)}" };
            _thread.Start();
            logger.LogInformation("Worker {Worker} started with {Threads} torch thread(s)", WorkerId, _threads);
        }
        return Task.CompletedTask;
    }

    public Task<WorkerStatus> GetStatusAsync() => Task.FromResult(new WorkerStatus(
        WorkerId, SiloPinnedPlacementDirector.DeviceOf(WorkerId), _threads, _currentJob, _currentShard, Interlocked.Read(ref _shardsCompleted), _models.Keys));

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _stop.Cancel();
        _thread?.Join(TimeSpan.FromSeconds(10));
        _models.Dispose();
        return Task.CompletedTask;
    }

    private void Run()
    {
        var resolver = new StoreArtifactResolver(store, _options.CacheFolder);
        var context = new ShardContext(WorkerId, SiloPinnedPlacementDirector.DeviceOf(WorkerId), _threads, resolver, _models, store);
        var idle = TimeSpan.FromMilliseconds(50);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (_leases.Count == 0)
                {
                    _coordinationStart = Stopwatch.GetTimestamp();
                    // Completing the shards run also leases the job's next ones: one call and one journal append between batches.
                    if (_completed.Count > 0) Exchange(_completed[0].JobId);
                    if (_leases.Count == 0) LeaseFromRunningJobs();
                }
                if (_leases.Count == 0)
                {
                    _stop.Token.WaitHandle.WaitOne(idle);
                    idle = TimeSpan.FromTicks(Math.Min(idle.Ticks * 2, _options.MaxIdleDelay.Ticks));
                    continue;
                }
                idle = TimeSpan.FromMilliseconds(50);
                RunNext(context);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                // Deactivation (the silo or the embedded CLI stopping) cancels the call in flight; an exception escaping this
                // thread would abort the whole process.
                break;
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "Worker {Worker}: the job engine did not answer; retrying", WorkerId);
                _stop.Token.WaitHandle.WaitOne(_options.MaxIdleDelay);
            }
        }
    }

    /// <summary>Reports the completed shards of <paramref name="jobId"/> and leases that job's next batch.</summary>
    private void Exchange(string jobId)
    {
        var outcomes = WriteDocuments(jobId);
        var leases = Call(() => grains.GetGrain<IJobGrain>(jobId).ExchangeAsync(outcomes, WorkerId, LeasesAhead()));
        _completed.Clear();
        foreach (var lease in leases) _leases.Enqueue(lease);
    }

    /// <summary>
    /// Writes the documents of the shards run since the last exchange, one artifact for the batch (one per attempt: a late
    /// duplicate attempt never overwrites the document of the attempt whose totals counted); returns their outcomes.
    /// </summary>
    private List<ShardOutcome> WriteDocuments(string jobId)
    {
        if (_completed.Count == 1)
        {
            var (_, outcome, document) = _completed[0];
            var key = ShardArtifacts.AttemptKey(jobId, outcome.ShardId, outcome.LeaseId);
            Call(() => store.PutBytesAsync(key, document, _stop.Token));
            return [outcome with { ResultArtifact = key }];
        }
        var batchKey = ShardArtifacts.BatchKey(jobId, _completed[0].Outcome.LeaseId);
        var batch = ShardBatch.Write([.. _completed.Select(c => (c.Outcome.ShardId, c.Document))]);
        Call(() => store.PutBytesAsync(batchKey, batch, _stop.Token));
        return [.. _completed.Select(c => c.Outcome with { ResultArtifact = ShardBatch.Reference(batchKey, c.Outcome.ShardId) })];
    }

    private void LeaseFromRunningJobs()
    {
        var running = Call(() => grains.GetGrain<IJobRegistryGrain>(0).ListRunningAsync());
        foreach (var job in running.Where(served.Serves))
        {
            // A job new to this worker starts with one shard: how long its shards take is not known yet.
            _shardSeconds = null;
            foreach (var lease in Call(() => grains.GetGrain<IJobGrain>(job).ExchangeAsync([], WorkerId, 1))) _leases.Enqueue(lease);
            if (_leases.Count > 0) return;
        }
    }

    /// <summary>
    /// How many shards to lease at once: as many as take about <see cref="BatchSeconds"/> at this worker's recent pace, so
    /// short shards cost one engine call per batch, while shards of a second or more still go one at a time to whichever
    /// worker is free.
    /// </summary>
    private int LeasesAhead() => _shardSeconds is { } seconds ? (int)Math.Clamp(BatchSeconds / Math.Max(seconds, 1e-4), 1, JobGrain.MaxLeasesAhead) : 1;

    private const double BatchSeconds = 0.25;

    /// <summary>Runs the first queued lease; it leaves the queue unless storage was out (then it runs again, same lease).</summary>
    private void RunNext(ShardContext context)
    {
        var lease = _leases.Peek();
        if (_lost.TryRemove(lease.LeaseId, out _))
        {
            _leases.Dequeue();
            return;
        }
        var started = Stopwatch.GetTimestamp();
        var outcome = RunShard(lease, context, out var retry);
        if (retry) return;
        _leases.Dequeue();
        if (outcome is null) return;
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        _shardSeconds = _shardSeconds is { } mean ? 0.8 * mean + 0.2 * seconds : seconds;
        _completed.Add((lease.JobId, outcome.Value.Outcome, outcome.Value.Document));
    }

    /// <returns>The outcome to report, or null when the attempt failed or its lease was lost; <paramref name="retry"/> when storage was out.</returns>
    private (ShardOutcome Outcome, byte[] Document)? RunShard(ShardLease lease, ShardContext context, out bool retry)
    {
        retry = false;
        var job = grains.GetGrain<IJobGrain>(lease.JobId);
        _currentJob = lease.JobId;
        _currentShard = lease.Shard.ShardId;
        using var lost = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        using var renewal = RenewWhileRunning(job, lease, lost);
        var coordination = Stopwatch.GetElapsedTime(_coordinationStart).TotalSeconds;
        var stopwatch = Stopwatch.StartNew();
        try
        {
            var result = kinds.Get(lease.Job.Kind).RunShard(context.ForJob(lease.JobId), ParametersOf(lease.Job), lease.Shard, lost.Token);
            var compute = stopwatch.Elapsed.TotalSeconds;
            _coordinationStart = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _shardsCompleted);
            // The document is written with the batch's others when the batch is reported (WriteDocuments).
            return (new ShardOutcome(lease.Shard.ShardId, lease.LeaseId, "", result.Totals, WorkerId, compute, coordination), result.Content);
        }
        catch (Exception e) when (!_stop.IsCancellationRequested && Storage.StorageUnavailableException.IsOutage(e))
        {
            // Not the shard's fault: no attempt is counted. The same lease runs again once storage answers; if it expired
            // meanwhile and another worker finished the shard, this completion is simply ignored.
            logger.LogWarning("Worker {Worker}: storage unavailable while running {Job}/{Shard} ({Message}); retrying the shard", WorkerId, lease.JobId, lease.Shard.ShardId, e.Message);
            _stop.Token.WaitHandle.WaitOne(_options.MaxIdleDelay);
            retry = true;
            return null;
        }
        catch (OperationCanceledException) when (lost.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            logger.LogWarning("Worker {Worker} lost the lease of {Job}/{Shard}; dropping it", WorkerId, lease.JobId, lease.Shard.ShardId);
            return null;
        }
        catch (Exception e) when (!_stop.IsCancellationRequested)
        {
            logger.LogWarning(e, "Worker {Worker}: shard {Job}/{Shard} failed", WorkerId, lease.JobId, lease.Shard.ShardId);
            Call(() => job.FailAsync(lease.Shard.ShardId, lease.LeaseId, e.Message, inputError: e is Storage.UserInputException));
            return null;
        }
        finally
        {
            _currentJob = null;
            _currentShard = null;
        }
    }

    /// <summary>The job's parameters JSON, read once per job from the artifact store when they travel by reference.</summary>
    private string ParametersOf(JobSpec spec)
    {
        if (spec.ParametersArtifact is not { } key) return spec.Parameters;
        if (_parameters.TryGetValue(key, out var json)) return json;
        json = Call(() => JobParameters.InlineAsync(spec, store, _stop.Token)).Parameters;
        // A worker runs few jobs at a time; the cache only spares re-reading the same job's parameters for every shard.
        if (_parameters.Count >= 8) _parameters.Clear();
        _parameters[key] = json;
        return json;
    }

    /// <summary>
    /// Renews the running lease, and the leases queued behind it, every third of the lease duration; cancels
    /// <paramref name="lost"/> when the job says the running one is no longer ours, and marks lost queued ones so they are skipped.
    /// The renewals await their calls: hundreds of workers renewing at once never hold thread-pool threads the silo needs to
    /// answer them. Disposing stops the renewals.
    /// </summary>
    private IDisposable RenewWhileRunning(IJobGrain job, ShardLease lease, CancellationTokenSource lost)
    {
        var queued = _leases.Where(l => l.LeaseId != lease.LeaseId).ToList();
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        _ = Task.Run(() => RenewAsync(job, lease, queued, lost, stop.Token));
        return new Stopper(stop);
    }

    private async Task RenewAsync(IJobGrain job, ShardLease lease, List<ShardLease> queued, CancellationTokenSource lost, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(lease.Job.LeaseDuration / 3);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                try
                {
                    if (!await job.RenewAsync(lease.Shard.ShardId, lease.LeaseId).WaitAsync(_options.CallTimeout, stop)) lost.Cancel();
                    foreach (var next in queued)
                    {
                        if (_lost.ContainsKey(next.LeaseId)) continue;
                        if (!await grains.GetGrain<IJobGrain>(next.JobId).RenewAsync(next.Shard.ShardId, next.LeaseId).WaitAsync(_options.CallTimeout, stop))
                            _lost[next.LeaseId] = true;
                    }
                }
                catch (Exception e) when (!stop.IsCancellationRequested)
                {
                    // A missed renewal is not a lost lease: the next one may get through before it expires. Nothing may escape
                    // the renewals (a storage 403 behind the job grain, say): the shard runs on and reports as usual.
                    logger.LogWarning(e, "Worker {Worker}: renewing the lease of {Job}/{Shard} failed; retrying at the next period", WorkerId, lease.JobId, lease.Shard.ShardId);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
            // The shard ended and disposed its lease token while a renewal was answering.
        }
    }

    /// <summary>Stops a renewal loop.</summary>
    private sealed class Stopper(CancellationTokenSource stop) : IDisposable
    {
        public void Dispose()
        {
            stop.Cancel();
            stop.Dispose();
        }
    }

    /// <summary>Calls the engine with a timeout, retrying until it answers or the worker stops.</summary>
    private T Call<T>(Func<Task<T>> call)
    {
        while (true)
        {
            _stop.Token.ThrowIfCancellationRequested();
            try
            {
                return call().WaitAsync(_options.CallTimeout, _stop.Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when ((e is TimeoutException or OrleansException || Storage.StorageUnavailableException.IsOutage(e)) && !_stop.IsCancellationRequested)
            {
                logger.LogDebug(e, "Worker {Worker}: call failed; retrying", WorkerId);
                _stop.Token.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(250));
            }
        }
    }

    private void Call(Func<Task> call) => Call(async () =>
    {
        await call();
        return true;
    });

    /// <summary>Materialises artifact folders in the worker's local cache.</summary>
    private sealed class StoreArtifactResolver(IArtifactStore store, string cacheRoot) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) =>
            ArtifactFolders.DownloadFolderAsync(store, key, cacheRoot, cancellationToken);
    }
}
