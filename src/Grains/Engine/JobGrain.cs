using System.Collections.Immutable;
using Babel.Contracts;
using Microsoft.Extensions.Logging;

namespace Babel.Grains.Engine;

/// <summary>
/// The job engine's one source of truth for a job. Every state change is written before the call returns, so a job
/// survives the crash of its silo and resumes on another; every method is idempotent, so a retried or late call
/// changes nothing twice. Work itself never runs here: workers lease shards and report back.
/// </summary>
public sealed class JobGrain(
    [PersistentState("job", JobGrain.StorageName)] IPersistentState<JobRecord> state,
    IGrainFactory grains,
    IClusterMembershipService membership,
    TimeProvider time,
    JobMetrics metrics,
    ILogger<JobGrain> logger) : Grain, IJobGrain
{
    public const string StorageName = "jobs";
    private bool _reportedEnd;
    private JobRecord Job => state.State;
    private string JobId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (Job.Spec is not null) metrics.SetRunning(JobId, Job.Spec.Kind, Job.Phase == JobPhase.Running);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (Job.Spec is not null) metrics.SetRunning(JobId, Job.Spec.Kind, running: false);
        return Task.CompletedTask;
    }

    public async Task<JobStatus> SubmitAsync(JobSpec spec, IReadOnlyList<ShardSpec> plan)
    {
        JobIds.Require(JobId);
        if (Job.Spec is not null)
        {
            if (!Job.Spec.SameWork(spec) || !Job.Plan.SequenceEqual(plan))
            {
                throw new JobRequestException($"Job '{JobId}' already exists with another spec; choose another job id or cancel it first.");
            }
            // The first submission may have stored the job and then failed to register it: registering is idempotent.
            if (Job.Phase == JobPhase.Running) await grains.GetGrain<IJobRegistryGrain>(0).RegisterAsync(JobId);
            return Status(includeShards: false);
        }
        Validate(spec, plan);
        Job.Spec = spec;
        Job.Plan = [.. plan];
        Job.Shards = plan.ToDictionary(s => s.ShardId, _ => new ShardRecord(), StringComparer.Ordinal);
        Job.Phase = plan.Count == 0 ? JobPhase.Succeeded : JobPhase.Running;
        Job.Submitted = time.GetUtcNow();
        if (plan.Count == 0) Job.Finished = Job.Submitted;
        await state.WriteStateAsync();
        metrics.JobsSubmitted.Add(1, JobMetrics.Kind(spec.Kind));
        metrics.SetRunning(JobId, spec.Kind, Job.Phase == JobPhase.Running);
        await grains.GetGrain<IJobRegistryGrain>(0).RegisterAsync(JobId);
        await AfterChangeAsync();
        logger.LogInformation("Job {JobId} ({Kind}) submitted with {Shards} shards", JobId, spec.Kind, plan.Count);
        return Status(includeShards: false);
    }

    private static void Validate(JobSpec spec, IReadOnlyList<ShardSpec> plan)
    {
        if (string.IsNullOrWhiteSpace(spec.Kind)) throw new JobRequestException("The job spec names no job kind.");
        if (spec.MaxAttempts < 1) throw new JobRequestException($"MaxAttempts must be at least 1 (got {spec.MaxAttempts}).");
        if (spec.LeaseDuration <= TimeSpan.Zero) throw new JobRequestException($"The lease duration must be positive (got {spec.LeaseDuration}).");
        if (plan.FirstOrDefault(s => !JobIds.IsValid(s.ShardId)) is { } bad)
        {
            throw new JobRequestException($"The plan's shard id '{bad.ShardId}' is not a plain name (letters, digits, '.', '_', '=', '+', '-').");
        }
        var duplicate = plan.GroupBy(s => s.ShardId, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new JobRequestException($"The plan repeats shard id '{duplicate.Key}'; shard ids must be unique.");
    }

    public async Task<ShardLease?> LeaseAsync(string worker)
    {
        var changed = false;
        var lease = NextLease(worker, ref changed);
        if (changed) await state.WriteStateAsync();
        await AfterChangeAsync();
        return lease;
    }

    public async Task<ShardLease?> CompleteAndLeaseAsync(ShardOutcome outcome, string worker)
    {
        var accepted = Complete(outcome);
        var changed = accepted;
        var lease = NextLease(worker, ref changed);
        if (changed) await state.WriteStateAsync();
        await AfterChangeAsync();
        return lease;
    }

    public async Task<bool> CompleteAsync(ShardOutcome outcome)
    {
        var accepted = Complete(outcome);
        if (accepted) await state.WriteStateAsync();
        await AfterChangeAsync();
        return accepted;
    }

    /// <summary>True when <paramref name="worker"/> is a device worker key (<c>SILO/DEVICE</c>) of a silo the cluster declared dead.</summary>
    private bool IsOnDeadSilo(string? worker) =>
        worker is not null && SiloPinnedPlacementDirector.TryParseSilo(worker, out var silo) && membership.CurrentSnapshot.GetSiloStatus(silo) == SiloStatus.Dead;

    public async Task<bool> RenewAsync(string shardId, Guid leaseId)
    {
        if (Job.Spec is null || Job.Phase != JobPhase.Running || !Job.Shards.TryGetValue(shardId, out var record)) return false;
        if (record.Phase != ShardPhase.Leased || record.LeaseId != leaseId) return false;
        record.LeaseExpires = time.GetUtcNow() + Job.Spec.LeaseDuration;
        await state.WriteStateAsync();
        metrics.LeaseRenewals.Add(1, JobMetrics.Kind(Job.Spec.Kind));
        return true;
    }

    /// <summary>Issues the next pending or expired shard to <paramref name="worker"/>, changing state in memory only.</summary>
    private ShardLease? NextLease(string worker, ref bool changed)
    {
        if (Job.Spec is null || Job.Phase != JobPhase.Running) return null;
        var now = time.GetUtcNow();
        foreach (var shard in Job.Plan)
        {
            var record = Job.Shards[shard.ShardId];
            // A device worker runs one shard at a time: asking for another while holding this one means its activation
            // restarted (e.g. its grain directory partition died with another silo) and dropped it, or the lease call that
            // granted it timed out. It resumes the same attempt.
            var resumed = record.Phase == ShardPhase.Leased && record.Worker == worker && SiloPinnedPlacementDirector.TryParseSilo(worker, out _);
            var expired = !resumed && record.Phase == ShardPhase.Leased && record.LeaseExpires <= now;
            // A worker of a silo the cluster declared dead never renews its lease: re-issue it now, not after the lease duration.
            var orphaned = !resumed && !expired && record.Phase == ShardPhase.Leased && IsOnDeadSilo(record.Worker);
            if (record.Phase != ShardPhase.Pending && !resumed && !expired && !orphaned) continue;
            changed = true;
            if (expired || orphaned)
            {
                metrics.ShardsFailed.Add(1, new KeyValuePair<string, object?>("reason", expired ? "lease-expired" : "silo-dead"), JobMetrics.Kind(Job.Spec.Kind));
                Record(shard.ShardId, expired ? ShardEventKind.LeaseExpired : ShardEventKind.SiloDead, record.Worker, record.Attempts);
                logger.LogWarning("Job {JobId} shard {ShardId}: lease of {Worker} {Reason}", JobId, shard.ShardId, record.Worker,
                    expired ? "expired" : "is lost with its dead silo");
                if (record.Attempts >= Job.Spec.MaxAttempts)
                {
                    FailJob(shard.ShardId, record, $"its lease expired after {record.Attempts} attempts (last worker {record.Worker})");
                    return null;
                }
            }
            record.Phase = ShardPhase.Leased;
            if (!resumed) record.Attempts++;
            record.LeaseId = Guid.NewGuid();
            record.IssuedLeases.Add(record.LeaseId);
            record.LeaseExpires = now + Job.Spec.LeaseDuration;
            record.Worker = worker;
            metrics.ShardsLeased.Add(1, JobMetrics.Kind(Job.Spec.Kind));
            Record(shard.ShardId, ShardEventKind.Leased, worker, record.Attempts);
            return new ShardLease(JobId, Job.Spec, shard, record.LeaseId, record.LeaseExpires, record.Attempts);
        }
        return null;
    }

    /// <summary>Sums a finished shard's totals once, in memory only; false for a duplicate or a lease never issued.</summary>
    private bool Complete(ShardOutcome outcome)
    {
        if (Job.Spec is null || Job.Phase != JobPhase.Running || !Job.Shards.TryGetValue(outcome.ShardId, out var record)) return false;
        // A shard counts once; a completion of any lease this job issued for it is valid, since shard results are deterministic.
        if (record.Phase == ShardPhase.Done || !record.IssuedLeases.Contains(outcome.LeaseId)) return false;
        // Every sum is checked before any is applied: an overflow must not leave the totals half-summed.
        var sums = new List<KeyValuePair<string, long>>(outcome.Totals.Count);
        foreach (var (name, value) in outcome.Totals)
        {
            try
            {
                sums.Add(KeyValuePair.Create(name, checked(Job.Totals.GetValueOrDefault(name) + value)));
            }
            catch (OverflowException)
            {
                FailJob(outcome.ShardId, record, $"its total '{name}' overflows a 64-bit integer when summed; the job's totals are kept as they were before it");
                return true;
            }
        }
        foreach (var (name, sum) in sums) Job.Totals[name] = sum;
        record.Phase = ShardPhase.Done;
        record.Worker = outcome.Worker;
        record.ResultArtifact = outcome.ResultArtifact;
        record.Error = null;
        var shard = Job.Plan.First(s => s.ShardId == outcome.ShardId);
        Job.ItemsDone += shard.Items;
        Job.ComputeSeconds += outcome.Seconds;
        Job.CoordinationSeconds += outcome.CoordinationSeconds;
        if (Job.Shards.Values.All(s => s.Phase == ShardPhase.Done))
        {
            Job.Phase = JobPhase.Succeeded;
            Job.Finished = time.GetUtcNow();
        }
        metrics.ShardsCompleted.Add(1, JobMetrics.Kind(Job.Spec.Kind));
        Record(outcome.ShardId, ShardEventKind.Completed, outcome.Worker, record.Attempts, outcome.Seconds);
        metrics.ShardItems.Add(shard.Items, JobMetrics.Kind(Job.Spec.Kind));
        metrics.ShardDuration.Record(outcome.Seconds, JobMetrics.Kind(Job.Spec.Kind));
        return true;
    }

    public async Task FailAsync(string shardId, Guid leaseId, string error)
    {
        if (Job.Spec is null || Job.Phase != JobPhase.Running || !Job.Shards.TryGetValue(shardId, out var record)) return;
        if (record.Phase != ShardPhase.Leased || record.LeaseId != leaseId) return;
        metrics.ShardsFailed.Add(1, new KeyValuePair<string, object?>("reason", "error"), JobMetrics.Kind(Job.Spec.Kind));
        logger.LogWarning("Job {JobId} shard {ShardId} attempt {Attempt} failed on {Worker}: {Error}", JobId, shardId, record.Attempts, record.Worker, error);
        record.Error = error;
        Record(shardId, ShardEventKind.Failed, record.Worker, record.Attempts, error: error);
        if (record.Attempts >= Job.Spec.MaxAttempts) FailJob(shardId, record, $"it failed {record.Attempts} times; last error: {error}");
        else record.Phase = ShardPhase.Pending;
        await state.WriteStateAsync();
        await AfterChangeAsync();
    }

    private void FailJob(string shardId, ShardRecord record, string why)
    {
        record.Phase = ShardPhase.Failed;
        Job.Phase = JobPhase.Failed;
        Job.Error = $"shard {shardId} failed: {why}";
        Job.Finished = time.GetUtcNow();
    }

    public async Task CancelAsync()
    {
        RequireJob();
        if (Job.Phase != JobPhase.Running) return;
        Job.Phase = JobPhase.Cancelled;
        Job.Finished = time.GetUtcNow();
        await state.WriteStateAsync();
        await AfterChangeAsync();
    }

    /// <summary>Once the job has ended (and that is persisted), reports it once per activation and takes it off the running list.</summary>
    private async Task AfterChangeAsync()
    {
        if (Job.Phase == JobPhase.Running || _reportedEnd) return;
        // Marked only once the registry has it: a failed call is retried by the next change or status call.
        await grains.GetGrain<IJobRegistryGrain>(0).MarkFinishedAsync(JobId);
        _reportedEnd = true;
        metrics.JobsFinished.Add(1, new KeyValuePair<string, object?>("outcome", Job.Phase.ToString().ToLowerInvariant()), JobMetrics.Kind(Job.Spec!.Kind));
        metrics.SetRunning(JobId, Job.Spec.Kind, running: false);
        logger.LogInformation("Job {JobId} finished: {Phase} {Error}", JobId, Job.Phase, Job.Error);
    }

    public async Task<JobStatus> GetStatusAsync(bool includeShards)
    {
        RequireJob();
        try
        {
            await AfterChangeAsync();
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            // Reading a job's status does not depend on the registry; the next call tries again.
            logger.LogWarning(e, "Job {JobId}: could not mark it finished in the registry", JobId);
        }
        return Status(includeShards);
    }

    public Task<JobSpec> GetSpecAsync() => Task.FromResult(RequireJob());

    public Task<IReadOnlyList<ShardEvent>> GetEventsAsync(long after, int max)
    {
        RequireJob();
        // Sequence numbers are 1-based list positions.
        var start = (int)Math.Clamp(after, 0, Job.Events.Count);
        return Task.FromResult<IReadOnlyList<ShardEvent>>(Job.Events.GetRange(start, Math.Min(Math.Max(max, 0), Job.Events.Count - start)));
    }

    private JobSpec RequireJob() => Job.Spec ?? throw new JobRequestException($"There is no job '{JobId}'; 'babel status' lists the jobs.");

    /// <summary>Appends a shard event; it is persisted with the state change that caused it.</summary>
    private void Record(string shardId, ShardEventKind kind, string? worker, int attempt, double? seconds = null, string? error = null) =>
        Job.Events.Add(new ShardEvent(Job.Events.Count + 1, time.GetUtcNow(), shardId, kind, worker, attempt, seconds, error));

    private JobStatus Status(bool includeShards)
    {
        var spec = Job.Spec!;
        var now = time.GetUtcNow();
        var counts = Job.Shards.Values.GroupBy(s => s.Phase).ToDictionary(g => g.Key, g => g.Count());
        var elapsed = ((Job.Finished ?? now) - Job.Submitted).TotalSeconds;
        var details = includeShards
            ? Job.Plan.Select(s =>
            {
                var r = Job.Shards[s.ShardId];
                return new ShardProgress(s.ShardId, r.Phase, r.Attempts, r.Worker, r.Error, s.Items, r.ResultArtifact);
            }).ToImmutableArray()
            : [];
        return new JobStatus(JobId, spec.Kind, Job.Phase, Job.Plan.Count,
            counts.GetValueOrDefault(ShardPhase.Done), counts.GetValueOrDefault(ShardPhase.Leased), counts.GetValueOrDefault(ShardPhase.Failed),
            Job.Plan.Sum(s => s.Items), Job.ItemsDone, elapsed > 0 ? Job.ItemsDone / elapsed : 0,
            Job.Submitted, Job.Finished, Job.Error, Job.Totals.ToImmutableSortedDictionary(StringComparer.Ordinal), details, Job.ComputeSeconds, Job.CoordinationSeconds);
    }
}
