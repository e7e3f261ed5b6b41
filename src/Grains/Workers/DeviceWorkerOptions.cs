namespace Babel.Grains.Workers;

/// <summary>How device workers pull and run shards (configuration section <c>Babel:Worker</c>).</summary>
public sealed class DeviceWorkerOptions
{
    public const string Section = "Babel:Worker";

    /// <summary>Local folder where models and corpora from the artifact store are materialised. Default: the system temp folder's <c>babel-artifacts</c>.</summary>
    public string CacheFolder { get; set; } = Path.Combine(Path.GetTempPath(), "babel-artifacts");

    /// <summary>Longest wait between polls when no job has work. Default 1 s.</summary>
    public TimeSpan MaxIdleDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Timeout of one call to a job grain; calls are retried, so a dead silo costs at most this much. Default 5 s.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(5);
}
