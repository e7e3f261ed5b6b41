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
/// The gradient exchange of one data-parallel training job (keyed by job id). Ranks join a group; each step every rank
/// sends its flattened gradient in chunks and gets back each chunk summed over the members in rank order, so every rank
/// receives the same bits. A rank that does not send within the step timeout is dropped: the others are told the group
/// changed, rejoin, and resume from the last checkpoint without it. State is in memory; a lost activation is rebuilt
/// from the ranks' rejoins (they name the last checkpoint they know of).
/// </summary>
public interface IGradientReduceGrain : IGrainWithStringKey
{
    /// <summary>
    /// Joins the group now forming and waits until it is formed: when <paramref name="expectedMembers"/> (or, after a
    /// loss, the surviving members) have joined, or <paramref name="formTimeout"/> after the first joiner, with whoever
    /// joined. A member of a running group that joins again (it lost its state) makes the group form anew. A rank that
    /// is not a member of the returned running or finished group is not needed.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<TrainingGroup> JoinAsync(string member, int expectedMembers, int knownCheckpoint, TimeSpan formTimeout);

    /// <summary>
    /// Adds rank <paramref name="rank"/>'s chunk <paramref name="chunk"/> of <paramref name="step"/>'s gradient and waits
    /// for the sum over the group; after <paramref name="stepTimeout"/> without every member's chunk, the members that
    /// did not send are dropped and every waiting rank is told the group changed.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<GradientChunkSum> SumAsync(Guid generation, int step, int rank, int chunk, byte[] values, TimeSpan stepTimeout);

    /// <summary>The leader stored the checkpoint of <paramref name="step"/>: a group formed later resumes from it.</summary>
    Task CheckpointedAsync(Guid generation, int step);

    /// <summary>A member finished training (the leader: and stored the result); a finished leader finishes the group.</summary>
    Task DoneAsync(Guid generation, string member, bool leader);

    /// <summary>The group as it stands.</summary>
    Task<TrainingGroup> GetGroupAsync();
}
