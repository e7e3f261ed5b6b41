using Babel.Contracts;
using Babel.Modeling.Distillation;

namespace Babel.Grains.Distillation;

/// <summary>
/// Token buckets for one teacher endpoint. Reservations may drive a bucket negative; the debt divided by the refill rate
/// is the caller's wait, so callers are spaced at the configured rate in arrival order. State is in memory: after a silo
/// crash the budget starts full again, which at worst allows one minute's burst.
/// </summary>
public sealed class TeacherRateLimitGrain(TimeProvider time) : Grain, ITeacherRateLimitGrain
{
    private readonly TokenBucket _requests = new();
    private readonly TokenBucket _tokens = new();

    public Task<TimeSpan> ReserveAsync(TeacherRateLimit limit, int requests, long tokens)
    {
        var now = time.GetUtcNow();
        var wait = Max(_requests.Reserve(limit.RequestsPerMinute, requests, now), _tokens.Reserve(limit.TokensPerMinute, tokens, now));
        return Task.FromResult(wait);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}

/// <summary>A bucket refilled continuously at <c>perMinute / 60</c> a second up to <c>perMinute</c>.</summary>
public sealed class TokenBucket
{
    private double _level = double.NaN;
    private DateTimeOffset _last;

    public TimeSpan Reserve(double perMinute, double amount, DateTimeOffset now)
    {
        if (perMinute <= 0) return TimeSpan.Zero;
        var rate = perMinute / 60;
        _level = double.IsNaN(_level) ? perMinute : Math.Min(perMinute, _level + Math.Max(0, (now - _last).TotalSeconds) * rate);
        _last = now;
        _level -= amount;
        return _level >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_level / rate);
    }
}

/// <summary>Asks the endpoint's <see cref="ITeacherRateLimitGrain"/> before each teacher request.</summary>
public sealed class GrainRateLimiter(IGrainFactory grains, string endpoint, TeacherRateLimit limit) : ITeacherRateLimiter
{
    public Task<TimeSpan> ReserveAsync(int requests, long tokens, CancellationToken cancellationToken) =>
        grains.GetGrain<ITeacherRateLimitGrain>(endpoint).ReserveAsync(limit, requests, tokens).WaitAsync(cancellationToken);
}
