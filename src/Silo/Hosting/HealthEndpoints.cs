namespace Babel.Silo;

/// <summary>The HTTP paths <see cref="HttpExtensions.MapBabelEndpoints"/> maps; deploy/k8s's probes and scrape config use them.</summary>
public static class HealthEndpoints
{
    /// <summary>Liveness: the process answers.</summary>
    public const string Live = "/health/live";

    /// <summary>Readiness: this silo is Active in the cluster (503 otherwise).</summary>
    public const string Ready = "/health/ready";

    /// <summary>The same check as <see cref="Ready"/>.</summary>
    public const string Health = "/health";

    /// <summary>Prometheus text exposition.</summary>
    public const string Metrics = "/metrics";
}
