namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// How the ranks of a data-parallel run add their gradients: every rank hands in its flattened gradient for a step and
/// gets back the sum over the group, added in rank order, so every rank holds the same bits whatever the arrival order.
/// </summary>
public interface IGradientExchange
{
    /// <summary>
    /// Replaces <paramref name="values"/> by the sum over the group's ranks of their <paramref name="values"/> for
    /// <paramref name="step"/>; throws <see cref="GroupChangedException"/> when the group lost or gained a rank meanwhile.
    /// </summary>
    void SumInPlace(int step, float[] values, CancellationToken cancellationToken);
}

/// <summary>
/// The data-parallel group changed under a rank (a rank stopped answering, or one came back): the rank drops its
/// in-memory state and rejoins, resuming from the group's last checkpoint.
/// </summary>
public sealed class GroupChangedException(string message) : Exception(message);
