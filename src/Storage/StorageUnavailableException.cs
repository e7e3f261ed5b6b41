namespace Babel.Storage;

/// <summary>
/// The storage service did not answer (network failure, timeout, service down) after the SDK's own retries: a fault
/// that may pass, unlike bad input. The CLI reports it as one sentence; a device worker waits and runs the same shard
/// again instead of counting a failed attempt.
/// </summary>
public sealed class StorageUnavailableException(string message, Exception? innerException = null)
    : Exception(message, innerException)
{
    /// <summary>True when <paramref name="exception"/> is, or wraps, a storage outage.</summary>
    public static bool IsOutage(Exception? exception) => exception switch
    {
        null => false,
        StorageUnavailableException => true,
        AggregateException aggregate => aggregate.InnerExceptions.Any(IsOutage),
        _ => IsOutage(exception.InnerException),
    };
}
