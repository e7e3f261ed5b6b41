using System.Collections.Concurrent;

namespace Babel.Grains.Engine;

/// <summary>
/// Which running jobs the workers of a silo serve: every job (a cluster's silos), or, in the embedded silo of a command,
/// only the jobs that command submitted or follows. A job that a stopped command left running in the same store then
/// waits for its own command's rerun (or <c>babel watch</c>) instead of taking the workers before the new command's job.
/// </summary>
public sealed class ServedJobs
{
    // Null: every job.
    private readonly ConcurrentDictionary<string, bool>? _followed;

    private ServedJobs(bool every) => _followed = every ? null : new(StringComparer.Ordinal);

    /// <summary>Every running job: a silo of a cluster (the default).</summary>
    public static ServedJobs Every() => new(every: true);

    /// <summary>Only the jobs the hosting command submits or follows (<see cref="Follow"/>, which <see cref="JobClient"/> calls).</summary>
    public static ServedJobs Followed() => new(every: false);

    /// <summary>Serves <paramref name="jobId"/> from now on.</summary>
    public void Follow(string jobId) => _followed?.TryAdd(jobId, true);

    public bool Serves(string jobId) => _followed is null || _followed.ContainsKey(jobId);
}
