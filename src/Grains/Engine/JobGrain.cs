using System.Collections.Immutable;
using System.Security.Cryptography;
using Babel.Contracts;
using Babel.Storage.Journals;
using Orleans.Concurrency;
using Microsoft.Extensions.Logging;

namespace Babel.Grains.Engine;

/// <summary>
/// The job engine's one source of truth for a job. A shard event costs the same whatever the job's size: the next shard
/// comes from queues (<see cref="ShardLedger"/>), and the event is one line appended to the job's journal, grouped with
/// the events of other workers that arrive meanwhile (<see cref="JournalWriter"/>). The grain is reentrant so that those
/// events can group: each call changes memory in one synchronous step and returns once its journal lines are durable.
/// A job survives the crash of its silo: the next activation reads the header, the plan and the journal, and lease
/// renewals (never journaled) resume against leases restored with a fresh expiry. Every method is idempotent.
/// </summary>
[Reentrant]
[CollectionAgeLimit(Minutes = 5)]
public sealed class JobGrain(
    [PersistentState("job", JobGrain.StorageName)] IPersistentState<JobRecord> state,
    IJobJournal journal,
    IGrainFactory grains,
    IClusterMembershipService membership,
    TimeProvider time,
    JobMetrics metrics,
    ILogger<JobGrain> logger) : Grain, IJobGrain
{
    public const string StorageName = "jobs";
    private readonly SemaphoreSlim _headerGate = new(1, 1);
    private readonly List<(string Segment, long Lines)> _segments = [];
    private ShardLedger? _ledger;
    private JournalWriter? _writer;
    private bool _reportedEnd;
    private MembershipVersion _membershipSeen = MembershipVersion.MinValue;
    private JobRecord Job => state.State;
    private string JobId => this.GetPrimaryKeyString();

    /// <summary>Where a job's plan is kept in the journal store.</summary>
    public static string PlanName(string jobId) => $"{jobId}/plan.json";

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (Job.Spec is null) return;
        var plan = await ReadPlanAsync(cancellationToken);
        var ledger = new ShardLedger(Job.Spec, plan) { LeaseFloor = time.GetUtcNow() + Job.Spec.LeaseDuration };
        foreach (var segment in await journal.ListAsync(JournalWriter.Folder(JobId), cancellationToken))
        {
            var entries = JournalEntry.ReadLines(await journal.ReadAsync(segment, cancellationToken) ?? [], segment);
            foreach (var entry in entries) ledger.Apply(entry);
            _segments.Add((segment, entries.Count));
        }
        if (Job.Phase == JobPhase.Cancelled) ledger.Cancel(Job.Finished);
        _ledger = ledger;
        if (ledger.Phase == JobPhase.Running)
        {
            // A new epoch per activation: this activation's segments are its own, and an older activation still running
            // somewhere (a silo declared dead that is not) fails its next header write.
            Job.Epoch++;
            await state.WriteStateAsync(cancellationToken);
            StartWriter();
        }
        metrics.SetRunning(JobId, Job.Spec.Kind, ledger.Phase == JobPhase.Running);
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (Job.Spec is not null) metrics.SetRunning(JobId, Job.Spec.Kind, running: false);
        return Task.CompletedTask;
    }

    private async Task<IReadOnlyList<ShardSpec>> ReadPlanAsync(CancellationToken cancellationToken)
    {
        var name = PlanName(JobId);
        var bytes = await journal.ReadAsync(name, cancellationToken)
            ?? throw new InvalidDataException($"The plan of job {JobId} ({name}) is missing from the job store; the job cannot be resumed.");
        if (Sha256(bytes) != Job.PlanSha256)
            throw new InvalidDataException($"The plan of job {JobId} ({name}) does not match the SHA-256 recorded at submission; the job cannot be resumed.");
        var plan = JobParameters.Deserialize<List<ShardSpec>>(bytes);
        if (plan.Count != Job.Shards) throw new InvalidDataException($"The plan of job {JobId} has {plan.Count} shards, not the {Job.Shards} recorded at submission.");
        return plan;
    }

    private void StartWriter()
    {
        var writer = new JournalWriter(journal, JobId, Job.Epoch, AzureBlobJobJournal.MaxBlocksPerLog);
        writer.Appended += (segment, lines) =>
        {
            if (_segments.Count > 0 && _segments[^1].Segment == segment) _segments[^1] = (segment, _segments[^1].Lines + lines);
            else _segments.Add((segment, lines));
        };
        _writer = writer;
    }

    public async Task<JobStatus> SubmitAsync(JobSpec spec, IReadOnlyList<ShardSpec> plan)
    {
        JobIds.Require(JobId);
        await _headerGate.WaitAsync();
        try
        {
            var planBytes = JobParameters.SerializeToUtf8Bytes(plan);
            if (Job.Spec is not null)
            {
                if (!Job.Spec.SameWork(spec) || Job.PlanSha256 != Sha256(planBytes))
                {
                    throw new JobRequestException($"Job '{JobId}' already exists with another spec; choose another job id or cancel it first.");
                }
                // The first submission may have stored the job and then failed to register it: registering is idempotent.
                if (_ledger!.Phase == JobPhase.Running) await grains.GetGrain<IJobRegistryGrain>(0).RegisterAsync(JobId);
                return Status(includeShards: false);
            }
            Validate(spec, plan);
            // The plan first: a header never names a plan that is not there.
            await journal.WriteAsync(PlanName(JobId), planBytes);
            Job.Spec = spec;
            Job.Shards = plan.Count;
            Job.PlanSha256 = Sha256(planBytes);
            Job.Phase = plan.Count == 0 ? JobPhase.Succeeded : JobPhase.Running;
            Job.Submitted = time.GetUtcNow();
            Job.Epoch = 1;
            if (plan.Count == 0) Job.Finished = Job.Submitted;
            try
            {
                await state.WriteStateAsync();
            }
            catch
            {
                state.State = new JobRecord();
                throw;
            }
            _ledger = new ShardLedger(spec, [.. plan]);
            if (plan.Count > 0) StartWriter();
        }
        finally
        {
            _headerGate.Release();
        }
        metrics.JobsSubmitted.Add(1, JobMetrics.Kind(spec.Kind));
        metrics.SetRunning(JobId, spec.Kind, _ledger.Phase == JobPhase.Running);
        await grains.GetGrain<IJobRegistryGrain>(0).RegisterAsync(JobId);
        await AfterChangeAsync();
        logger.LogInformation("Job {JobId} ({Kind}) submitted with {Shards} shards", JobId, spec.Kind, plan.Count);
        return Status(includeShards: false);
    }

    private static string Sha256(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void Validate(JobSpec spec, IReadOnlyList<ShardSpec> plan)
    {
        if (string.IsNullOrWhiteSpace(spec.Kind)) throw new JobRequestException("The job spec names no job kind.");
        if (spec.MaxAttempts < 1) throw new JobRequestException($"MaxAttempts must be at least 1 (got {spec.MaxAttempts}).");
        if (spec.LeaseDuration <= TimeSpan.Zero) throw new JobRequestException($"The lease duration must be positive (got {spec.LeaseDuration}).");
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var shard in plan)
        {
            if (!JobIds.IsValid(shard.ShardId))
                throw new JobRequestException($"The plan's shard id '{shard.ShardId}' is not a plain name (letters, digits, '.', '_', '=', '+', '-').");
            if (!ids.Add(shard.ShardId)) throw new JobRequestException($"The plan repeats shard id '{shard.ShardId}'; shard ids must be unique.");
        }
    }

    /// <summary>Most shards one exchange leases ahead: a batch of short shards, not a worker hoarding a job.</summary>
    public const int MaxLeasesAhead = 64;

    public async Task<ShardLease?> LeaseAsync(string worker)
    {
        if (_ledger is null) return null;
        var entries = new List<JournalEntry>();
        var leases = Lease(worker, 1, entries);
        await RecordAsync(entries);
        return leases.FirstOrDefault();
    }

    public async Task<IReadOnlyList<ShardLease>> ExchangeAsync(IReadOnlyList<ShardOutcome> completed, string worker, int want)
    {
        if (_ledger is null) return [];
        var entries = new List<JournalEntry>();
        foreach (var outcome in completed) Complete(outcome, entries);
        var leases = Lease(worker, Math.Clamp(want, 1, MaxLeasesAhead), entries);
        await RecordAsync(entries);
        return leases;
    }

    public async Task<bool> CompleteAsync(ShardOutcome outcome)
    {
        if (_ledger is null) return false;
        var entries = new List<JournalEntry>();
        var accepted = Complete(outcome, entries);
        await RecordAsync(entries);
        return accepted;
    }

    /// <summary>Chooses and applies up to <paramref name="want"/> leases for <paramref name="worker"/> (in memory; the caller journals <paramref name="entries"/>).</summary>
    private List<ShardLease> Lease(string worker, int want, List<JournalEntry> entries)
    {
        ThrowIfBroken();
        var ledger = _ledger!;
        var now = time.GetUtcNow();
        // A worker of a silo the cluster declared dead never renews its leases: re-issue them now, not after the lease duration.
        var snapshot = membership.CurrentSnapshot;
        if (snapshot.Version != _membershipSeen)
        {
            _membershipSeen = snapshot.Version;
            foreach (var lost in ledger.LoseLeases(w => SiloPinnedPlacementDirector.TryParseSilo(w, out var silo) && snapshot.GetSiloStatus(silo) == SiloStatus.Dead, now))
                ApplyLive(lost, entries);
        }
        var leases = new List<ShardLease>();
        // A device worker asks only once it has run every lease it holds: asking while holding some means its activation
        // restarted (e.g. its grain directory partition died with another silo) or the call that granted them timed out.
        // It resumes the same attempts.
        var chosen = SiloPinnedPlacementDirector.TryParseSilo(worker, out _) ? ledger.Resume(worker, now, want) : [];
        while (true)
        {
            foreach (var entry in chosen)
            {
                if (ApplyLive(entry, entries) && entry.Kind == ShardEventKind.Leased) leases.Add(ledger.LeaseOf(JobId, entry));
            }
            if (leases.Count >= want || ledger.Phase != JobPhase.Running) break;
            chosen = ledger.ChooseLease(worker, now);
            if (chosen.Count == 0) break;
        }
        return leases;
    }

    private bool Complete(ShardOutcome outcome, List<JournalEntry> entries)
    {
        ThrowIfBroken();
        if (!_ledger!.TryIndex(outcome.ShardId, out var shard)) return false;
        var entry = new JournalEntry(ShardEventKind.Completed, shard, outcome.LeaseId, time.GetUtcNow(), outcome.Worker, _ledger.Holder(shard).Attempt, outcome.ResultArtifact,
            outcome.Totals, outcome.Seconds, outcome.CoordinationSeconds);
        return ApplyLive(entry, entries);
    }

    /// <summary>Applies an entry made by this activation; journals it (adds it to <paramref name="entries"/>) and reports it when it changed the job.</summary>
    private bool ApplyLive(JournalEntry entry, List<JournalEntry> entries)
    {
        var ledger = _ledger!;
        if (!ledger.Apply(entry)) return false;
        entries.Add(entry);
        var kind = JobMetrics.Kind(ledger.Spec.Kind);
        var shardId = ledger.Plan[entry.Shard].ShardId;
        switch (entry.Kind)
        {
            case ShardEventKind.Leased:
                metrics.ShardsLeased.Add(1, kind);
                break;
            case ShardEventKind.Completed:
                metrics.ShardsCompleted.Add(1, kind);
                metrics.ShardItems.Add(ledger.Plan[entry.Shard].Items, kind);
                metrics.ShardDuration.Record(entry.Seconds ?? 0, kind);
                break;
            case ShardEventKind.Failed:
                metrics.ShardsFailed.Add(1, new KeyValuePair<string, object?>("reason", "error"), kind);
                logger.LogWarning("Job {JobId} shard {ShardId} attempt {Attempt} failed on {Worker}: {Error}", JobId, shardId, entry.Attempt, entry.Worker, entry.Error);
                break;
            default:
                var reason = entry.Kind == ShardEventKind.LeaseExpired ? "lease-expired" : "silo-dead";
                metrics.ShardsFailed.Add(1, new KeyValuePair<string, object?>("reason", reason), kind);
                logger.LogWarning("Job {JobId} shard {ShardId}: lease of {Worker} {Reason}", JobId, shardId, entry.Worker,
                    entry.Kind == ShardEventKind.LeaseExpired ? "expired" : "is lost with its dead silo");
                break;
        }
        return true;
    }

    /// <summary>Waits until <paramref name="entries"/> are durable, then reports the job's end if they ended it.</summary>
    private async Task RecordAsync(List<JournalEntry> entries)
    {
        if (entries.Count > 0)
        {
            try
            {
                await _writer!.AppendAsync(entries);
            }
            catch
            {
                // Memory may now be ahead of the journal: start over from what landed.
                DeactivateOnIdle();
                throw;
            }
        }
        await AfterChangeAsync();
    }

    private void ThrowIfBroken()
    {
        if (_writer?.Failure is { } failure) throw new InvalidOperationException($"Job {JobId}: its journal could not be written; the job grain restarts.", failure);
    }

    public Task<bool> RenewAsync(string shardId, Guid leaseId)
    {
        if (_ledger is null || !_ledger.Renew(shardId, leaseId, time.GetUtcNow())) return Task.FromResult(false);
        metrics.LeaseRenewals.Add(1, JobMetrics.Kind(_ledger.Spec.Kind));
        return Task.FromResult(true);
    }

    public async Task FailAsync(string shardId, Guid leaseId, string error, bool inputError = false)
    {
        if (_ledger is null || !_ledger.TryIndex(shardId, out var shard)) return;
        ThrowIfBroken();
        var entries = new List<JournalEntry>();
        var (worker, attempt) = _ledger.Holder(shard);
        ApplyLive(new JournalEntry(ShardEventKind.Failed, shard, leaseId, time.GetUtcNow(), worker, attempt, Error: error, InputError: inputError ? true : null), entries);
        await RecordAsync(entries);
    }

    public async Task CancelAsync()
    {
        RequireJob();
        if (_ledger!.Phase != JobPhase.Running) return;
        _ledger.Cancel(time.GetUtcNow());
        await AfterChangeAsync();
    }

    /// <summary>
    /// Once the job has ended: waits for its journal, writes the header's final phase, reports the end to the registry once
    /// per activation and takes it off the running list. A failed step is retried by the next change or status call.
    /// </summary>
    private async Task AfterChangeAsync()
    {
        var ledger = _ledger;
        if (ledger is null || ledger.Phase == JobPhase.Running || _reportedEnd) return;
        if (_writer is not null) await _writer.FlushedAsync();
        await _headerGate.WaitAsync();
        try
        {
            if (Job.Phase != ledger.Phase)
            {
                Job.Phase = ledger.Phase;
                Job.Finished = ledger.Finished;
                Job.Error = ledger.Error;
                await state.WriteStateAsync();
            }
        }
        finally
        {
            _headerGate.Release();
        }
        await grains.GetGrain<IJobRegistryGrain>(0).MarkFinishedAsync(JobId);
        if (_reportedEnd) return;
        _reportedEnd = true;
        metrics.JobsFinished.Add(1, new KeyValuePair<string, object?>("outcome", ledger.Phase.ToString().ToLowerInvariant()), JobMetrics.Kind(ledger.Spec.Kind));
        metrics.SetRunning(JobId, ledger.Spec.Kind, running: false);
        logger.LogInformation("Job {JobId} finished: {Phase} {Error}", JobId, ledger.Phase, ledger.Error);
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
        // An ended job is reported once its journal has landed (what a result is assembled from); a running job's progress
        // is reported at once, even while thousands of workers keep the journal busy: it may run a batch ahead of the disk.
        if (_writer is not null && (_ledger!.Phase != JobPhase.Running || includeShards)) await _writer.FlushedAsync();
        return Status(includeShards);
    }

    public Task<JobSpec> GetSpecAsync() => Task.FromResult(RequireJob());

    public async Task<IReadOnlyList<ShardEvent>> GetEventsAsync(long after, int max)
    {
        RequireJob();
        if (_writer is not null) await _writer.FlushedAsync();
        var events = new List<ShardEvent>();
        long first = 1;
        foreach (var (segment, lines) in _segments.ToList())
        {
            if (events.Count >= max) break;
            if (first + lines - 1 > after)
            {
                var entries = JournalEntry.ReadLines(await journal.ReadAsync(segment) ?? [], segment);
                for (var i = 0; i < entries.Count && events.Count < max; i++)
                {
                    if (first + i > after) events.Add(entries[i].ToEvent(first + i, _ledger!.Plan[entries[i].Shard].ShardId));
                }
            }
            first += lines;
        }
        return events;
    }

    private JobSpec RequireJob() => Job.Spec ?? throw new JobRequestException($"There is no job '{JobId}'; 'babel status' lists the jobs.");

    private JobStatus Status(bool includeShards)
    {
        var ledger = _ledger!;
        var now = time.GetUtcNow();
        var elapsed = ((ledger.Finished ?? now) - Job.Submitted).TotalSeconds;
        return new JobStatus(JobId, ledger.Spec.Kind, ledger.Phase, ledger.Plan.Count,
            ledger.Count(ShardPhase.Done), ledger.Count(ShardPhase.Leased), ledger.Count(ShardPhase.Failed),
            ledger.Items, ledger.ItemsDone, elapsed > 0 ? ledger.ItemsDone / elapsed : 0,
            Job.Submitted, ledger.Finished, ledger.Error, ledger.Totals.ToImmutableSortedDictionary(StringComparer.Ordinal),
            includeShards ? ledger.Progress() : [], ledger.ComputeSeconds, ledger.CoordinationSeconds, ledger.InputError);
    }
}
