using Babel.Contracts;
using Babel.Modeling.Training.DataParallel;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace Babel.Grains.Training;

/// <summary>
/// The gradient exchange of one data-parallel training job (<see cref="IGradientReduceGrain"/>). It only moves bytes and
/// keeps time: the sum itself is <see cref="RankOrderedSum"/>, always in rank order. Reentrant, so the ranks' calls wait
/// together; every state change is one synchronous step between awaits.
/// </summary>
[Reentrant]
public sealed class GradientReduceGrain(TimeProvider time, ILogger<GradientReduceGrain> logger) : Grain, IGradientReduceGrain
{
    private TrainingGroupPhase _phase = TrainingGroupPhase.Forming;
    private Guid _generation = Guid.Empty;
    private IReadOnlyList<string> _members = [];
    private int _lastCheckpoint;
    // The forming round: who joined, how many it waits for (0: not yet known), since when, and the group it will form.
    private readonly SortedSet<string> _joiners = new(StringComparer.Ordinal);
    private int _expected;
    private DateTimeOffset? _roundStarted;
    private TaskCompletionSource<TrainingGroup> _formed = NewFormed();
    private readonly Dictionary<(int Step, int Chunk), PendingChunk> _pending = [];
    private readonly HashSet<string> _done = new(StringComparer.Ordinal);

    private string JobId => this.GetPrimaryKeyString();

    public async Task<TrainingGroup> JoinAsync(string member, int expectedMembers, int knownCheckpoint, TimeSpan formTimeout)
    {
        _lastCheckpoint = Math.Max(_lastCheckpoint, knownCheckpoint);
        if (_phase == TrainingGroupPhase.Finished) return Current();
        if (_phase == TrainingGroupPhase.Running)
        {
            if (!_members.Contains(member, StringComparer.Ordinal)) return Current();
            // A member that joins again lost its state (its worker restarted it): every member resumes from the checkpoint.
            Regroup(_members.Count(m => !_done.Contains(m)), $"{member} joined again");
        }
        if (_expected == 0) _expected = Math.Max(1, expectedMembers);
        _joiners.Add(member);
        _roundStarted ??= time.GetUtcNow();
        var formed = _formed.Task;
        if (_joiners.Count >= _expected) Form();
        var remaining = _roundStarted is { } started ? started + formTimeout - time.GetUtcNow() : TimeSpan.Zero;
        if (!formed.IsCompleted && remaining > TimeSpan.Zero) await Task.WhenAny(formed, Task.Delay(remaining, time));
        // Whoever waited out the round forms the group of those who came.
        if (!formed.IsCompleted && _formed.Task == formed) Form();
        return await formed;
    }

    public async Task<GradientChunkSum> SumAsync(Guid generation, int step, int rank, int chunk, byte[] values, TimeSpan stepTimeout)
    {
        if (_phase != TrainingGroupPhase.Running || generation != _generation || rank < 0 || rank >= _members.Count) return Changed;
        var key = (step, chunk);
        if (!_pending.TryGetValue(key, out var pending)) _pending[key] = pending = new PendingChunk(_members.Count, time.GetUtcNow());
        pending.Parts[rank] = values;
        if (pending.Parts.All(p => p is not null))
        {
            _pending.Remove(key);
            pending.Result.TrySetResult(new GradientChunkSum(RankOrderedSum.SumFloat32Bytes(pending.Parts!), GroupChanged: false));
        }
        var result = pending.Result.Task;
        var remaining = pending.Started + stepTimeout - time.GetUtcNow();
        if (!result.IsCompleted && remaining > TimeSpan.Zero) await Task.WhenAny(result, Task.Delay(remaining, time));
        if (!result.IsCompleted && generation == _generation && _phase == TrainingGroupPhase.Running)
        {
            var missing = _members.Where((_, r) => pending.Parts[r] is null).ToList();
            Regroup(_members.Count - missing.Count, $"{string.Join(", ", missing)} sent nothing for step {step + 1} within {stepTimeout.TotalSeconds:F0} s");
        }
        return await result;
    }

    public Task CheckpointedAsync(Guid generation, int step)
    {
        _lastCheckpoint = Math.Max(_lastCheckpoint, step);
        return Task.CompletedTask;
    }

    public Task DoneAsync(Guid generation, string member, bool leader)
    {
        if (generation != _generation) return Task.CompletedTask;
        _done.Add(member);
        if (leader)
        {
            _phase = TrainingGroupPhase.Finished;
            logger.LogInformation("Training job {Job}: finished with {Members} rank(s)", JobId, _members.Count);
        }
        return Task.CompletedTask;
    }

    public Task<TrainingGroup> GetGroupAsync() => Task.FromResult(Current());

    private TrainingGroup Current() => new(_generation, _members, _lastCheckpoint, _phase);

    private static readonly GradientChunkSum Changed = new(null, GroupChanged: true);

    private static TaskCompletionSource<TrainingGroup> NewFormed() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Forms the group of this round's joiners, in rank order (their shard ids' order), resuming from the last checkpoint.</summary>
    private void Form()
    {
        _members = [.. _joiners];
        _generation = Guid.NewGuid();
        _phase = TrainingGroupPhase.Running;
        _done.Clear();
        _joiners.Clear();
        _roundStarted = null;
        _expected = 0;
        logger.LogInformation("Training job {Job}: group of {Members} rank(s) ({Names}) resumes from step {Step}", JobId, _members.Count, string.Join(", ", _members), _lastCheckpoint);
        var formed = _formed;
        _formed = NewFormed();
        formed.TrySetResult(Current());
    }

    /// <summary>Ends the running generation: every waiting rank is told the group changed; the next round waits for <paramref name="survivors"/>.</summary>
    private void Regroup(int survivors, string reason)
    {
        logger.LogWarning("Training job {Job}: {Reason}; the group forms again with {Survivors} rank(s) from step {Step}", JobId, reason, survivors, _lastCheckpoint);
        _phase = TrainingGroupPhase.Forming;
        _generation = Guid.NewGuid();
        _expected = Math.Max(1, survivors);
        _joiners.Clear();
        _roundStarted = null;
        foreach (var pending in _pending.Values) pending.Result.TrySetResult(Changed);
        _pending.Clear();
    }

    private sealed class PendingChunk(int members, DateTimeOffset started)
    {
        public byte[]?[] Parts { get; } = new byte[]?[members];
        public DateTimeOffset Started { get; } = started;
        public TaskCompletionSource<GradientChunkSum> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
