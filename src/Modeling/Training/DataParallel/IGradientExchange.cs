namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// How the ranks of a data-parallel run add their gradients: every rank hands in its flattened gradient for a step, range
/// by range as its backward pass completes them, and gets back the sum over the group, added in rank order, so every
/// rank holds the same bits whatever the arrival order. Every rank starts the same ranges in the same order.
/// </summary>
public interface IGradientExchange
{
    /// <summary>
    /// Begins summing <paramref name="values"/>[<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>)
    /// over the group for <paramref name="step"/> and returns at once; the range must not be written until <see cref="Finish"/>.
    /// </summary>
    void Start(int step, float[] values, int start, int count);

    /// <summary>
    /// Waits until every range started for <paramref name="step"/> is summed and written back into <paramref name="values"/>;
    /// the started ranges must cover the whole array. Throws <see cref="GroupChangedException"/> when the group lost or
    /// gained a rank meanwhile.
    /// </summary>
    void Finish(int step, float[] values, CancellationToken cancellationToken);
}

/// <summary>The whole-array exchange of a step in one call.</summary>
public static class GradientExchanges
{
    /// <summary>Replaces <paramref name="values"/> by their sum over the group for <paramref name="step"/>.</summary>
    public static void SumInPlace(this IGradientExchange exchange, int step, float[] values, CancellationToken cancellationToken)
    {
        exchange.Start(step, values, 0, values.Length);
        exchange.Finish(step, values, cancellationToken);
    }
}

/// <summary>
/// The data-parallel group changed under a rank (a rank stopped answering, or one came back): the rank drops its
/// in-memory state and rejoins, resuming from the group's last checkpoint.
/// </summary>
public sealed class GroupChangedException(string message) : Exception(message);
