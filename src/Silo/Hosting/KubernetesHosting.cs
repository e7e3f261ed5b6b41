using Orleans.Hosting.Kubernetes;

namespace Babel.Silo;

/// <summary>
/// When a cluster-mode silo uses <c>Microsoft.Orleans.Hosting.Kubernetes</c>: <see cref="BabelClusterOptions.KubernetesHosting"/>
/// when set, otherwise whenever the pod's name and namespace are in the environment (deploy/k8s sets them from the downward
/// API). The package reads these variables itself; they are checked here so a silo outside Kubernetes never tries.
/// </summary>
public static class KubernetesHosting
{
    /// <summary><c>POD_NAME</c>: the pod's name, which becomes the silo's name.</summary>
    public const string PodNameVariable = KubernetesHostingOptions.PodNameEnvironmentVariable;

    /// <summary><c>POD_NAMESPACE</c>: the namespace whose pods the silo watches.</summary>
    public const string PodNamespaceVariable = KubernetesHostingOptions.PodNamespaceEnvironmentVariable;

    /// <summary>The pod label Orleans matches against <see cref="BabelClusterOptions.ServiceId"/>.</summary>
    public const string ServiceIdLabel = KubernetesHostingOptions.ServiceIdLabel;

    /// <summary>The pod label Orleans matches against <see cref="BabelClusterOptions.ClusterId"/>.</summary>
    public const string ClusterIdLabel = KubernetesHostingOptions.ClusterIdLabel;

    /// <summary>The variables Kubernetes hosting cannot run without.</summary>
    public static IReadOnlyList<string> PodVariables { get; } = [PodNameVariable, PodNamespaceVariable];

    /// <summary>Whether the silo described by <paramref name="cluster"/> uses Kubernetes hosting, given the environment in <paramref name="configuration"/>.</summary>
    public static bool IsEnabled(BabelClusterOptions cluster, IConfiguration configuration) =>
        cluster.Mode == ClusterMode.Cluster
        && (cluster.KubernetesHosting ?? PodVariables.All(v => !string.IsNullOrWhiteSpace(configuration[v])));
}
