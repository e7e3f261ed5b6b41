using System.Text.Json;
using Babel.Contracts;
using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Training;

/// <summary>The latest checkpoint a data-parallel job's leader stored (<c>latest.json</c>).</summary>
public sealed record TrainingCheckpointPointer(int Step);

/// <summary>
/// One rank of a data-parallel training job on a worker: join the job's group, restore the group's checkpoint (or start
/// fresh), train until the end or until the group changes — then rejoin and resume — and, as leader, store a checkpoint
/// of the model folder every checkpoint interval and the finished folder at the end. Any training loop fits: it gets the
/// folder, its <see cref="DataParallelRank"/> and the checkpoint hooks.
/// </summary>
public sealed class DataParallelRankRunner(IGrainFactory grains, IArtifactStore store, TrainingMetrics? metrics, string jobId, string member, string worker,
    string workDirectory, TimeSpan stepTimeout)
{
    /// <summary>Where a training job keeps its checkpoints and model in the artifact store; removed once the result is read.</summary>
    public static string Prefix(string jobId) => $"training/{jobId}/";

    public static string CheckpointKey(string jobId, int step) => $"{Prefix(jobId)}checkpoint-{step:D8}.zip";

    public static string LatestKey(string jobId) => $"{Prefix(jobId)}latest.json";

    public static string ModelKey(string jobId) => $"{Prefix(jobId)}model.zip";

    /// <summary>
    /// Deletes a finished job's checkpoints and pointer (the model stays, so the result can be written again): they are
    /// kept until the result is read, so a rank re-run after the end still finds the final checkpoint.
    /// </summary>
    public static async Task DeleteCheckpointsAsync(IArtifactStore store, string jobId, PretrainingOptions options, CancellationToken cancellationToken)
    {
        foreach (var step in options.CheckpointSteps()) await store.DeleteAsync(CheckpointKey(jobId, step), cancellationToken);
        await store.DeleteAsync(LatestKey(jobId), cancellationToken);
    }

    /// <summary>
    /// Whether a group formed after a loss waits for the lost ranks to come back (DiLoCo: a group of fewer replicas is
    /// another run) rather than going on with the survivors; it waits up to <see cref="KeepRanksFormTimeouts"/> step timeouts.
    /// </summary>
    public bool KeepRanks { get; init; }

    /// <summary>
    /// Step timeouts a group that keeps its ranks waits for them: a lost rank's lease (two step timeouts) runs out, its
    /// shard goes to another worker, and that rank restores the checkpoint before it joins.
    /// </summary>
    public const int KeepRanksFormTimeouts = 4;

    /// <summary>How long a small call to the group grain (a checkpoint or end notice) may take; it is best effort.</summary>
    private static readonly TimeSpan NoticeTimeout = TimeSpan.FromSeconds(5);

    /// <param name="ranks">Ranks of the full group (the shards of the job).</param>
    /// <param name="microBatches">Micro-batches of every global batch.</param>
    /// <param name="steps">Steps of the run, reported in the result.</param>
    /// <param name="prepareFresh">Fills a new, empty work folder for a run from step 0 (e.g. the tokenizer files).</param>
    /// <param name="train">Trains in the folder to the end (the leader also completes the model folder there); throws <see cref="GroupChangedException"/> when the group changes.</param>
    /// <param name="cancellationToken">Cancelled when the worker loses the lease or stops.</param>
    public TrainingRankResult Run(int ranks, int microBatches, int steps, Action<string> prepareFresh, Action<string, DataParallelRank, CheckpointHooks> train,
        CancellationToken cancellationToken)
    {
        var membership = grains.GetGrain<ITrainingGroupGrain>(jobId);
        var tag = TrainingMetrics.Worker(worker);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var group = Join(membership, ranks, cancellationToken);
            var index = group.Members.ToList().IndexOf(member);
            // The group finished, or went on without this rank while it was away: nothing is left for it to do.
            if (group.Phase == TrainingGroupPhase.Finished || index < 0) return new TrainingRankResult(member, Trained: false, Leader: false, steps, null);

            Restore(group.ResumeStep, prepareFresh, cancellationToken);
            var timing = new List<DataParallelStepTiming>();
            var exchange = new GrainGradientExchange(grains, jobId, group.Generation, index, group.Members.Count, stepTimeout);
            // This rank's shard of the sums is placed where its first call comes from: here, before any rank's first exchange.
            Notice(exchange.OwnShard.OpenAsync);
            var rank = new DataParallelRank(index, group.Members.Count, microBatches, exchange)
            {
                Timed = t =>
                {
                    timing.Add(t);
                    metrics?.Tokens.Add(t.RankTokens, tag);
                    metrics?.Steps.Add(1, tag);
                    metrics?.StepSeconds.Add(t.StepSeconds, tag);
                    metrics?.ExchangeSeconds.Add(t.ExchangeSeconds, tag);
                },
            };
            var hooks = rank.IsLeader ? new CheckpointHooks(Written: step => Checkpointed(membership, group.Generation, step, cancellationToken)) : new CheckpointHooks();
            try
            {
                train(workDirectory, rank, hooks);
            }
            catch (GroupChangedException)
            {
                metrics?.Regroups.Add(1, tag);
                continue;
            }
            if (rank.IsLeader) FolderCheckpoints.Upload(store, ModelKey(jobId), workDirectory, cancellationToken);
            Notice(() => membership.DoneAsync(group.Generation, member, rank.IsLeader));
            Directory.Delete(workDirectory, recursive: true);
            // The first step of a group pays for warming up (and the leader's checkpoints for themselves): the means skip it.
            var timed = timing.Skip(1).DefaultIfEmpty(timing.LastOrDefault()).ToList();
            return new TrainingRankResult(member, Trained: true, rank.IsLeader, steps, rank.IsLeader ? ModelKey(jobId) : null, worker, timed.Count,
                timed.Average(t => t.StepSeconds), timed.Average(t => t.ExchangeSeconds), timed[0].GradientValues, timed.Average(t => t.ComputeSeconds));
        }
    }

    /// <summary>Joins the group, retrying while the group grain does not answer (its silo died: the grain comes back on another).</summary>
    private TrainingGroup Join(ITrainingGroupGrain membership, int ranks, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                var formTimeout = KeepRanks ? KeepRanksFormTimeouts * stepTimeout : stepTimeout;
                return membership.JoinAsync(member, ranks, LatestCheckpoint(cancellationToken), formTimeout, KeepRanks)
                    .WaitAsync(formTimeout + GrainGradientExchange.AnswerMargin, cancellationToken).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is OrleansException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
            }
        }
    }

    /// <summary>The step of the latest checkpoint the leader stored; 0 when none.</summary>
    private int LatestCheckpoint(CancellationToken cancellationToken) =>
        store.GetBytesAsync(LatestKey(jobId), cancellationToken).GetAwaiter().GetResult() is { } bytes
            ? JsonSerializer.Deserialize<TrainingCheckpointPointer>(bytes)?.Step ?? 0
            : 0;

    /// <summary>A fresh work folder: the group's checkpoint unpacked, or prepared for step 0.</summary>
    private void Restore(int step, Action<string> prepareFresh, CancellationToken cancellationToken)
    {
        if (Directory.Exists(workDirectory)) Directory.Delete(workDirectory, recursive: true);
        if (step > 0)
        {
            if (!FolderCheckpoints.Restore(store, CheckpointKey(jobId, step), workDirectory, cancellationToken))
            {
                throw new InvalidOperationException($"The checkpoint of step {step} of training job {jobId} is missing or damaged in the artifact store.");
            }
            return;
        }
        Directory.CreateDirectory(workDirectory);
        prepareFresh(workDirectory);
    }

    /// <summary>The leader's checkpoint: the whole model folder zipped to the store, then the pointer, then the group told.</summary>
    private void Checkpointed(ITrainingGroupGrain membership, Guid generation, int step, CancellationToken cancellationToken)
    {
        FolderCheckpoints.Upload(store, CheckpointKey(jobId, step), workDirectory, cancellationToken);
        store.PutBytesAsync(LatestKey(jobId), JsonSerializer.SerializeToUtf8Bytes(new TrainingCheckpointPointer(step)), cancellationToken).GetAwaiter().GetResult();
        Notice(() => membership.CheckpointedAsync(generation, step));
    }

    private static void Notice(Func<Task> call)
    {
        try
        {
            call().WaitAsync(NoticeTimeout).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            // Best effort: the pointer in the store says the same, and a rank that waits for a finished group is told so.
        }
    }
}
