using Babel.Contracts;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace Babel.Grains.Training;

/// <summary>
/// The membership of one data-parallel training job (<see cref="ITrainingGroupGrain"/>): forming, regrouping after a loss,
/// checkpoints and the end. The sums are in the generation's <see cref="GradientReduceGrain"/>s, which report silent
/// ranks here. Reentrant, so the ranks' joins wait together; every state change is one synchronous step between awaits.
/// </summary>
[Reentrant]
public sealed class TrainingGroupGrain(TimeProvider time, ILogger<TrainingGroupGrain> logger) : Grain, ITrainingGroupGrain
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
    private readonly HashSet<string> _done = new(StringComparer.Ordinal);

    private string JobId => this.GetPrimaryKeyString();

    public async Task<TrainingGroup> JoinAsync(string member, int expectedMembers, int knownCheckpoint, TimeSpan formTimeout, bool keepRanks = false)
    {
        _lastCheckpoint = Math.Max(_lastCheckpoint, knownCheckpoint);
        if (_phase == TrainingGroupPhase.Finished) return Current();
        if (_phase == TrainingGroupPhase.Running)
        {
            if (!_members.Contains(member, StringComparer.Ordinal)) return Current();
            // A member that joins again lost its state (its worker restarted it): every member resumes from the checkpoint.
            Regroup(_members.Count(m => !_done.Contains(m)), $"{member} joined again");
        }
        if (_expected == 0 || keepRanks) _expected = Math.Max(Math.Max(1, _expected), expectedMembers);
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

    public Task DropAsync(Guid generation, IReadOnlyList<int> ranks, string reason)
    {
        if (generation == _generation && _phase == TrainingGroupPhase.Running)
        {
            var missing = ranks.Where(r => r >= 0 && r < _members.Count).Select(r => _members[r]).Distinct().ToList();
            Regroup(_members.Count - missing.Count, $"{string.Join(", ", missing)} {reason}");
        }
        return Task.CompletedTask;
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
        var old = _generation;
        _generation = Guid.NewGuid();
        _expected = Math.Max(1, survivors);
        _joiners.Clear();
        _roundStarted = null;
        // Every rank still waiting on a shard of the old generation is told at once (best effort: one lost with its silo
        // makes its ranks' calls fail, which means the same to them).
        for (var shard = 0; shard < _members.Count; shard++) GrainFactory.GetGrain<IGradientReduceGrain>(GradientReduceGrain.Key(JobId, old, shard)).AbandonAsync().Ignore();
    }
}
