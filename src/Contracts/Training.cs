using Orleans.Concurrency;

namespace Babel.Contracts;

/// <summary>Where a data-parallel group stands: gathering its ranks, training, or done.</summary>
[GenerateSerializer]
public enum TrainingGroupPhase
{
    Forming = 0,
    Running = 1,
    Finished = 2,
}

/// <summary>
/// A data-parallel group as its reduce grain formed it: the generation (a new one after every change of members), the
/// members in rank order (shard ids of the training job), and the step every member resumes from (the group's last
/// checkpoint; 0 for a fresh start).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record TrainingGroup(
    [property: Id(0)] Guid Generation,
    [property: Id(1)] IReadOnlyList<string> Members,
    [property: Id(2)] int ResumeStep,
    [property: Id(3)] TrainingGroupPhase Phase);

/// <summary>One chunk of a step's gradient summed over the group (float32 bytes), or word that the group changed and the rank must rejoin.</summary>
[GenerateSerializer, Immutable]
public sealed record GradientChunkSum(
    [property: Id(0)] byte[]? Sum,
    [property: Id(1)] bool GroupChanged);

/// <summary>
/// The group of one data-parallel training job (keyed by job id): ranks join it, it forms the group (members in rank
/// order, a generation, the step to resume from), records checkpoints and the end, and drops ranks that stop sending:
/// every membership decision is taken here. The sums themselves are spread over <see cref="IGradientReduceGrain"/>s,
/// one per rank. State is in memory; a lost activation is rebuilt from the ranks' rejoins (they name the last checkpoint
/// they know of).
/// </summary>
public interface ITrainingGroupGrain : IGrainWithStringKey
{
    /// <summary>
    /// Joins the group now forming and waits until it is formed: when <paramref name="expectedMembers"/> (or, after a
    /// loss, the surviving members) have joined, or <paramref name="formTimeout"/> after the first joiner, with whoever
    /// joined. A member of a running group that joins again (it lost its state) makes the group form anew. A rank that
    /// is not a member of the returned running or finished group is not needed. With <paramref name="keepRanks"/> (DiLoCo,
    /// where a group of fewer replicas is another run) a group formed after a loss also waits for the lost ranks, which
    /// come back on other workers once their leases expire, up to <paramref name="formTimeout"/>.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<TrainingGroup> JoinAsync(string member, int expectedMembers, int knownCheckpoint, TimeSpan formTimeout, bool keepRanks = false);

    /// <summary>
    /// A reduce grain of <paramref name="generation"/> waited a step timeout for the chunks of <paramref name="ranks"/>:
    /// they are dropped, and every rank still waiting on any reduce grain of the generation is told the group changed.
    /// </summary>
    Task DropAsync(Guid generation, IReadOnlyList<int> ranks, string reason);

    /// <summary>The leader stored the checkpoint of <paramref name="step"/>: a group formed later resumes from it.</summary>
    Task CheckpointedAsync(Guid generation, int step);

    /// <summary>A member finished training (the leader: and stored the result); a finished leader finishes the group.</summary>
    Task DoneAsync(Guid generation, string member, bool leader);

    /// <summary>The group as it stands.</summary>
    Task<TrainingGroup> GetGroupAsync();
}

/// <summary>
/// One shard of a generation's gradient exchange (keyed by job id, generation and shard index; see
/// <c>GradientReduceGrain.Key</c>): the chunks c with c mod N = shard. Every rank sends it its part of those chunks and
/// gets back each chunk summed over the members in rank order, so every rank receives the same bits; N shards make a
/// reduce-scatter and all-gather in which each silo moves 2(N − 1)/N of the gradient rather than one silo 2N times it.
/// </summary>
public interface IGradientReduceGrain : IGrainWithStringKey
{
    /// <summary>Activates the shard where the caller runs (the rank that owns it opens it as the group forms).</summary>
    Task OpenAsync();

    /// <summary>
    /// Adds rank <paramref name="rank"/>'s part of chunk <paramref name="chunk"/> of <paramref name="step"/>'s gradient and
    /// waits for the sum over the <paramref name="members"/>; after <paramref name="stepTimeout"/> without every member's
    /// part, the group grain is told which ranks did not send and every waiting rank that the group changed. The part is
    /// immutable: a rank on the shard's own silo hands its buffer over without a copy, and must not write it until the answer.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<GradientChunkSum> SumAsync(int step, int members, int rank, int chunk, Immutable<byte[]> values, TimeSpan stepTimeout);

    /// <summary>The group changed: every waiting and later call is told so.</summary>
    Task AbandonAsync();
}
