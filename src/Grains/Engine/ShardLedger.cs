using System.Collections.Immutable;
using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>
/// A job's shards in memory: each shard's phase, attempts and leases, the exact totals summed so far, and the queues that
/// choose the next shard in constant time. Every change is a <see cref="JournalEntry"/> applied by <see cref="Apply"/>, the
/// same way whether the job grain just made it or replays its journal after a restart; so replaying the journal rebuilds
/// exactly the state the entries described. Not thread-safe: one job grain's turns use it.
/// </summary>
public sealed class ShardLedger
{
    private readonly JobSpec _spec;
    private readonly IReadOnlyList<ShardSpec> _plan;
    private readonly Dictionary<string, int> _index;
    private readonly ShardState[] _shards;
    private readonly int[] _counts = new int[4];
    // Shards never leased, in plan order; entries of shards leased meanwhile are skipped when they come up.
    private readonly Queue<int> _pending;
    // Shards to run again (a failed attempt, an expired or lost lease), served before new ones.
    private readonly Queue<int> _retry = new();
    // Leased shards by expiry; a renewal only moves the shard's own expiry, and the queue catches up when the entry comes up.
    private readonly PriorityQueue<int, DateTimeOffset> _expiry = new();
    // The shards each worker holds, so a worker that asks again resumes what it dropped and a dead silo's leases are found at once.
    private readonly Dictionary<string, HashSet<int>> _held = new(StringComparer.Ordinal);

    public ShardLedger(JobSpec spec, IReadOnlyList<ShardSpec> plan)
    {
        _spec = spec;
        _plan = plan;
        _shards = new ShardState[plan.Count];
        _index = new Dictionary<string, int>(plan.Count, StringComparer.Ordinal);
        for (var i = 0; i < plan.Count; i++)
        {
            _shards[i] = new ShardState();
            _index[plan[i].ShardId] = i;
            Items += plan[i].Items;
        }
        _counts[(int)ShardPhase.Pending] = plan.Count;
        _pending = new Queue<int>(Enumerable.Range(0, plan.Count));
        if (plan.Count == 0) Phase = JobPhase.Succeeded;
    }

    public JobSpec Spec => _spec;
    public IReadOnlyList<ShardSpec> Plan => _plan;
    public JobPhase Phase { get; private set; }
    public string? Error { get; private set; }

    /// <summary>True when the job failed on a bad input (a worker found it corrupt or invalid), not on a fault.</summary>
    public bool InputError { get; private set; }
    public DateTimeOffset? Finished { get; private set; }
    public SortedDictionary<string, long> Totals { get; } = new(StringComparer.Ordinal);
    public long Items { get; }
    public long ItemsDone { get; private set; }
    public double ComputeSeconds { get; private set; }
    public double CoordinationSeconds { get; private set; }

    /// <summary>Journal entries applied so far, counted or ignored: the sequence number of the last event.</summary>
    public long Entries { get; private set; }

    /// <summary>Leases restored from a journal expire no sooner than this, so live workers have a lease duration to renew them.</summary>
    public DateTimeOffset LeaseFloor { get; set; }

    public int Count(ShardPhase phase) => _counts[(int)phase];

    public bool TryIndex(string shardId, out int index) => _index.TryGetValue(shardId, out index);

    /// <summary>The worker that holds (or last held) <paramref name="shard"/> and its attempt number.</summary>
    public (string? Worker, int Attempt) Holder(int shard) => (_shards[shard].Worker, _shards[shard].Attempts);

    /// <summary>Ends the job as cancelled (a header change, not a journal entry).</summary>
    public void Cancel(DateTimeOffset? finished)
    {
        if (Phase != JobPhase.Running) return;
        Phase = JobPhase.Cancelled;
        Finished = finished;
    }

    /// <summary>
    /// The entries that hand <paramref name="worker"/> its next shard: one whose lease expired (on its last attempt, the
    /// entry ends the job instead), else a failed one to retry, else the next new one. Empty when nothing is available now.
    /// Nothing is applied here; the queues only drop what they handed out.
    /// </summary>
    public List<JournalEntry> ChooseLease(string worker, DateTimeOffset now)
    {
        var entries = new List<JournalEntry>();
        if (Phase != JobPhase.Running) return entries;
        while (_expiry.TryPeek(out var shard, out var expires) && expires <= now)
        {
            _expiry.Dequeue();
            var state = _shards[shard];
            if (state.Phase != ShardPhase.Leased) continue;
            if (state.LeaseExpires > now)
            {
                _expiry.Enqueue(shard, state.LeaseExpires);
                continue;
            }
            entries.Add(new JournalEntry(ShardEventKind.LeaseExpired, shard, state.LeaseId, now, state.Worker, state.Attempts));
            if (state.Attempts < _spec.MaxAttempts) entries.Add(Issue(shard, worker, now));
            return entries;
        }
        if ((Next(_retry) ?? Next(_pending)) is { } next) entries.Add(Issue(next, worker, now));
        return entries;
    }

    /// <summary>New leases, same attempts, for up to <paramref name="max"/> shards <paramref name="worker"/> holds (it dropped them).</summary>
    public List<JournalEntry> Resume(string worker, DateTimeOffset now, int max)
    {
        if (Phase != JobPhase.Running || !_held.TryGetValue(worker, out var held)) return [];
        return [.. held.Order().Take(max).Select(shard => new JournalEntry(ShardEventKind.Leased, shard, Guid.NewGuid(), now, worker, _shards[shard].Attempts))];
    }

    /// <summary>The entries that re-issue every lease held by a worker for which <paramref name="isLost"/> is true (its silo died).</summary>
    public List<JournalEntry> LoseLeases(Func<string, bool> isLost, DateTimeOffset now)
    {
        var entries = new List<JournalEntry>();
        if (Phase != JobPhase.Running) return entries;
        foreach (var (worker, shards) in _held)
        {
            if (!isLost(worker)) continue;
            foreach (var shard in shards.Order()) entries.Add(new JournalEntry(ShardEventKind.SiloDead, shard, _shards[shard].LeaseId, now, worker, _shards[shard].Attempts));
        }
        return entries;
    }

    private JournalEntry Issue(int shard, string worker, DateTimeOffset now) =>
        new(ShardEventKind.Leased, shard, Guid.NewGuid(), now, worker, _shards[shard].Attempts + 1);

    private int? Next(Queue<int> queue)
    {
        while (queue.TryDequeue(out var shard))
        {
            if (_shards[shard].Phase == ShardPhase.Pending) return shard;
        }
        return null;
    }

    /// <summary>Extends a live lease; false when it is no longer the shard's current lease.</summary>
    public bool Renew(string shardId, Guid lease, DateTimeOffset now)
    {
        if (Phase != JobPhase.Running || !_index.TryGetValue(shardId, out var shard)) return false;
        var state = _shards[shard];
        if (state.Phase != ShardPhase.Leased || state.LeaseId != lease) return false;
        state.LeaseExpires = now + _spec.LeaseDuration;
        return true;
    }

    /// <summary>The lease a <see cref="ShardEventKind.Leased"/> entry issued, as its worker receives it.</summary>
    public ShardLease LeaseOf(string jobId, JournalEntry leased) =>
        new(jobId, _spec, _plan[leased.Shard], leased.Lease, _shards[leased.Shard].LeaseExpires, leased.Attempt);

    /// <summary>
    /// Applies one entry; true when it changed the job (a completion that counted, a lease issued, an attempt ended).
    /// Entries that no longer apply (a duplicate, a completion quoting a lease never issued, an event of a lease that was
    /// replaced) change nothing, so replaying a journal with repeated or stale lines gives the same state.
    /// </summary>
    public bool Apply(JournalEntry entry)
    {
        Entries++;
        if (Phase != JobPhase.Running || entry.Shard < 0 || entry.Shard >= _shards.Length) return false;
        var state = _shards[entry.Shard];
        switch (entry.Kind)
        {
            case ShardEventKind.Leased:
                if (state.Phase is ShardPhase.Done or ShardPhase.Failed || state.Phase == ShardPhase.Leased && state.LeaseId == entry.Lease) return false;
                Release(entry.Shard, state);
                SetPhase(state, ShardPhase.Leased);
                state.Attempts = entry.Attempt;
                state.LeaseId = entry.Lease;
                (state.Issued ??= []).Add(entry.Lease);
                state.Worker = entry.Worker;
                state.LeaseExpires = Max(entry.Time + _spec.LeaseDuration, LeaseFloor);
                _expiry.Enqueue(entry.Shard, state.LeaseExpires);
                if (entry.Worker is not null) Held(entry.Worker).Add(entry.Shard);
                return true;
            case ShardEventKind.Completed:
                // A shard counts once; a completion of any lease issued for it is valid, since shard results are deterministic.
                if (state.Phase == ShardPhase.Done || state.Issued is null || !state.Issued.Contains(entry.Lease)) return false;
                return Complete(entry, state);
            case ShardEventKind.Failed or ShardEventKind.LeaseExpired or ShardEventKind.SiloDead:
                if (state.Phase != ShardPhase.Leased || state.LeaseId != entry.Lease) return false;
                Release(entry.Shard, state);
                if (entry.Kind == ShardEventKind.Failed) state.Error = entry.Error;
                if (entry.InputError == true)
                {
                    // Running it again reads the same bad input: the job fails now, with the input's own sentence.
                    FailJob(entry, state, entry.Error ?? "a bad input");
                    InputError = true;
                }
                else if (state.Attempts >= _spec.MaxAttempts)
                {
                    FailJob(entry, state, entry.Kind switch
                    {
                        ShardEventKind.Failed => $"it failed {state.Attempts} times; last error: {entry.Error}",
                        ShardEventKind.LeaseExpired => $"its lease expired after {state.Attempts} attempts (last worker {entry.Worker})",
                        _ => $"its worker's silo died on attempt {state.Attempts} of {_spec.MaxAttempts} (last worker {entry.Worker})",
                    });
                }
                else
                {
                    SetPhase(state, ShardPhase.Pending);
                    _retry.Enqueue(entry.Shard);
                }
                return true;
            default:
                return false;
        }
    }

    private bool Complete(JournalEntry entry, ShardState state)
    {
        // Every sum is checked before any is applied: an overflow must not leave the totals half-summed.
        var totals = entry.Totals ?? ImmutableSortedDictionary<string, long>.Empty;
        var sums = new List<KeyValuePair<string, long>>(totals.Count);
        foreach (var (name, value) in totals)
        {
            try
            {
                sums.Add(KeyValuePair.Create(name, checked(Totals.GetValueOrDefault(name) + value)));
            }
            catch (OverflowException)
            {
                Release(entry.Shard, state);
                FailJob(entry, state, $"its total '{name}' overflows a 64-bit integer when summed; the job's totals are kept as they were before it");
                return true;
            }
        }
        foreach (var (name, sum) in sums) Totals[name] = sum;
        Release(entry.Shard, state);
        SetPhase(state, ShardPhase.Done);
        state.Worker = entry.Worker;
        state.ResultArtifact = entry.Result;
        state.Error = null;
        ItemsDone += _plan[entry.Shard].Items;
        ComputeSeconds += entry.Seconds ?? 0;
        CoordinationSeconds += entry.CoordinationSeconds ?? 0;
        if (_counts[(int)ShardPhase.Done] == _shards.Length)
        {
            Phase = JobPhase.Succeeded;
            Finished = entry.Time;
        }
        return true;
    }

    private void FailJob(JournalEntry entry, ShardState state, string why)
    {
        SetPhase(state, ShardPhase.Failed);
        Phase = JobPhase.Failed;
        Error = $"shard {_plan[entry.Shard].ShardId} failed: {why}";
        Finished = entry.Time;
    }

    /// <summary>Takes a leased shard off its worker's list.</summary>
    private void Release(int shard, ShardState state)
    {
        if (state.Phase == ShardPhase.Leased && state.Worker is not null && _held.TryGetValue(state.Worker, out var held))
        {
            held.Remove(shard);
            if (held.Count == 0) _held.Remove(state.Worker);
        }
    }

    private HashSet<int> Held(string worker)
    {
        if (!_held.TryGetValue(worker, out var held)) _held[worker] = held = [];
        return held;
    }

    private void SetPhase(ShardState state, ShardPhase phase)
    {
        _counts[(int)state.Phase]--;
        _counts[(int)phase]++;
        state.Phase = phase;
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    /// <summary>Every shard's progress, in plan order.</summary>
    public ImmutableArray<ShardProgress> Progress() =>
        [.. _plan.Select((s, i) => new ShardProgress(s.ShardId, _shards[i].Phase, _shards[i].Attempts, _shards[i].Worker, _shards[i].Error, s.Items, _shards[i].ResultArtifact))];

    private sealed class ShardState
    {
        public ShardPhase Phase;
        public int Attempts;
        public Guid LeaseId;
        public DateTimeOffset LeaseExpires;
        public string? Worker;
        public string? Error;
        public string? ResultArtifact;
        // Every lease issued for the shard (usually one), so a late completion of an earlier lease still counts, once.
        public List<Guid>? Issued;
    }
}
