namespace Babel.Contracts;

/// <summary>A teacher endpoint's budget: requests and tokens per minute; zero or less means unlimited.</summary>
[GenerateSerializer, Immutable]
public sealed record TeacherRateLimit(
    [property: Id(0)] double RequestsPerMinute,
    [property: Id(1)] double TokensPerMinute);

/// <summary>
/// The cluster-wide rate limit of one teacher endpoint (keyed by its URL): a token bucket for requests and one for tokens,
/// each holding at most one minute of budget. A caller reserves before every request and waits the returned delay, so
/// every worker of every silo shares one budget.
/// </summary>
public interface ITeacherRateLimitGrain : IGrainWithStringKey
{
    /// <summary>Takes <paramref name="requests"/> and <paramref name="tokens"/> from the buckets (going into debt if need be) and returns how long the caller must wait before sending.</summary>
    Task<TimeSpan> ReserveAsync(TeacherRateLimit limit, int requests, long tokens);
}
