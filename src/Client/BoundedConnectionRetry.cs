namespace Babel.Client;

/// <summary>Retries the first connection to the cluster's gateways until a deadline, so a dead cluster fails in bounded time.</summary>
internal sealed class BoundedConnectionRetry(TimeSpan limit)
{
    private readonly DateTime _deadline = DateTime.UtcNow + limit;

    public async Task<bool> ShouldRetryAsync(Exception exception, CancellationToken cancellationToken)
    {
        if (DateTime.UtcNow >= _deadline) return false;
        await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        return true;
    }
}
