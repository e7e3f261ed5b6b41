namespace Babel.Storage.Journals;

/// <summary>
/// Where the job engine keeps what changes while a job runs: append-only logs of whole records (one line each) and a few
/// whole objects written once (a job's plan). An append costs what it adds, never what the log already holds, so a shard
/// event costs the same in a job of 100 shards and one of 100,000. Names are <c>/</c>-separated plain names, as artifact keys.
/// </summary>
/// <remarks>
/// Kept apart from the artifact store: clients may write artifacts (they upload inputs), but only silos write journals.
/// </remarks>
public interface IJobJournal
{
    /// <summary>
    /// Appends <paramref name="records"/> (whole lines, each ending in <c>\n</c>) to log <paramref name="log"/>, creating it;
    /// durable when the task completes. A failed append may or may not have landed: readers must treat records idempotently.
    /// </summary>
    Task AppendAsync(string log, ReadOnlyMemory<byte> records, CancellationToken cancellationToken = default);

    /// <summary>The whole log or object, or null when it does not exist.</summary>
    Task<byte[]?> ReadAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Writes the whole object <paramref name="name"/> atomically for readers, replacing any object there.</summary>
    Task WriteAsync(string name, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default);

    /// <summary>The names that start with <paramref name="prefix"/>, in ordinal order.</summary>
    Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken cancellationToken = default);
}
