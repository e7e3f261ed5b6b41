using Babel.Contracts;
using Babel.Modeling.Training.DataParallel;
using Orleans.Concurrency;
using Orleans.Placement;

namespace Babel.Grains.Training;

/// <summary>
/// One shard of a generation's gradient exchange (<see cref="IGradientReduceGrain"/>): it sums the chunks c with
/// c mod N = shard. It only moves bytes and keeps time: the sum itself is <see cref="RankOrderedSum"/>, always in rank
/// order, so sharding changes where each float is added, never the order of its additions. Placed on the silo of its
/// first caller, the rank that owns it (it opens its shard as the group forms), so the N shards of a group sit on the
/// ranks' N silos. Reentrant, so the ranks' calls wait together; every state change is one synchronous step between awaits.
/// </summary>
[Reentrant, PreferLocalPlacement]
public sealed class GradientReduceGrain(TimeProvider time) : Grain, IGradientReduceGrain
{
    private readonly Dictionary<(int Step, int Chunk), PendingChunk> _pending = [];
    private bool _abandoned;

    /// <summary>The key of shard <paramref name="shard"/> of a job's group of generation <paramref name="generation"/>: a new generation uses new grains.</summary>
    public static string Key(string jobId, Guid generation, int shard) => $"{jobId}/{generation:N}/{shard}";

    private (string JobId, Guid Generation) Group
    {
        get
        {
            var key = this.GetPrimaryKeyString();
            var shardAt = key.LastIndexOf('/');
            var generationAt = key.LastIndexOf('/', shardAt - 1);
            return (key[..generationAt], Guid.ParseExact(key[(generationAt + 1)..shardAt], "N"));
        }
    }

    /// <summary>A shard activated after its generation ended (a late rank, or the group's own notice) is abandoned from the start.</summary>
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var (jobId, generation) = Group;
        var group = await GrainFactory.GetGrain<ITrainingGroupGrain>(jobId).GetGroupAsync();
        _abandoned = group.Generation != generation || group.Phase != TrainingGroupPhase.Running;
    }

    public Task OpenAsync() => Task.CompletedTask;

    public async Task<GradientChunkSum> SumAsync(int step, int members, int rank, int chunk, Immutable<byte[]> values, TimeSpan stepTimeout)
    {
        if (_abandoned || rank < 0 || rank >= members) return Changed;
        var key = (step, chunk);
        if (!_pending.TryGetValue(key, out var pending)) _pending[key] = pending = new PendingChunk(members, time.GetUtcNow());
        if (pending.Parts.Length != members) return Changed;
        pending.Parts[rank] = values.Value;
        if (pending.Parts.All(p => p is not null))
        {
            _pending.Remove(key);
            pending.Result.TrySetResult(new GradientChunkSum(RankOrderedSum.SumFloat32Bytes(pending.Parts!), GroupChanged: false));
        }
        var result = pending.Result.Task;
        var remaining = pending.Started + stepTimeout - time.GetUtcNow();
        if (!result.IsCompleted && remaining > TimeSpan.Zero) await Task.WhenAny(result, Task.Delay(remaining, time));
        if (!result.IsCompleted && !_abandoned)
        {
            var missing = Enumerable.Range(0, members).Where(r => pending.Parts[r] is null).ToList();
            Abandon();
            var (jobId, generation) = Group;
            await GrainFactory.GetGrain<ITrainingGroupGrain>(jobId).DropAsync(generation, missing, $"sent nothing for step {step + 1} within {stepTimeout.TotalSeconds:F0} s");
        }
        return await result;
    }

    public Task AbandonAsync()
    {
        Abandon();
        return Task.CompletedTask;
    }

    private static readonly GradientChunkSum Changed = new(null, GroupChanged: true);

    private void Abandon()
    {
        if (_abandoned) return;
        _abandoned = true;
        foreach (var pending in _pending.Values) pending.Result.TrySetResult(Changed);
        _pending.Clear();
        // Nothing of a past generation is needed again.
        DeactivateOnIdle();
    }

    private sealed class PendingChunk(int members, DateTimeOffset started)
    {
        public byte[]?[] Parts { get; } = new byte[]?[members];
        public DateTimeOffset Started { get; } = started;
        public TaskCompletionSource<GradientChunkSum> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
