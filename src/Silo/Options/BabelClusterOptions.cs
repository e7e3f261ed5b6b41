namespace Babel.Silo;

/// <summary>How a silo finds its cluster and where it keeps grain state and artifacts.</summary>
public enum ClusterMode
{
    /// <summary>One localhost silo; grain state and artifacts in local folders. The default, for a laptop.</summary>
    Embedded,

    /// <summary>Azure Table clustering, Azure Blob grain state and Azure Blob artifacts (Azurite or real Azure Storage).</summary>
    Cluster,
}

/// <summary>
/// The silo's place in the cluster, bound from <c>Babel:Cluster</c> (environment: <c>Babel__Cluster__Mode=Cluster</c> …).
/// The storage connection string is deliberately not here: it is read only from <see cref="StorageConnectionString"/>'s keys,
/// so options dumps and logs can never carry it.
/// </summary>
public sealed class BabelClusterOptions
{
    public const string Section = "Babel:Cluster";

    /// <summary><see cref="ClusterMode.Embedded"/> (default) or <see cref="ClusterMode.Cluster"/>.</summary>
    public ClusterMode Mode { get; set; } = ClusterMode.Embedded;

    /// <summary>Orleans cluster id; silos with the same id form one cluster. Default <c>babel</c>.</summary>
    public string ClusterId { get; set; } = "babel";

    /// <summary>Orleans service id; keys persisted grain state, so keep it stable across deployments. Default <c>babel</c>.</summary>
    public string ServiceId { get; set; } = "babel";

    /// <summary>Silo-to-silo port. Default 11111.</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port clients connect to. Default 30000.</summary>
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The IP address the silo and gateway ports listen on. Default <c>127.0.0.1</c>: loopback only, so nothing off this
    /// machine reaches a silo unless told to. Set this machine's (or pod's) IP to listen on that one interface, or
    /// <c>0.0.0.0</c> (<c>::</c> for IPv6) for every interface. deploy/k8s sets the pod IP.
    /// </summary>
    public string ListenAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// The IP address other silos and clients use to reach this silo. Default: <see cref="ListenAddress"/> when that is one
    /// address; when it is every interface (<c>0.0.0.0</c>), 127.0.0.1 in embedded mode and the host's DNS address in cluster
    /// mode. With one listen address it must be that address (deploy/k8s sets both to the pod IP).
    /// </summary>
    public string? AdvertisedAddress { get; set; }

    /// <summary>
    /// Embedded mode: the silo port of the primary silo on this host to join, for several silo processes on one machine
    /// without Azure Storage. Null (default): this silo is the primary.
    /// </summary>
    public int? PrimarySiloPort { get; set; }

    /// <summary>Embedded mode: folder of persisted grain state. Default <c>./.babel/state</c>.</summary>
    public string StateFolder { get; set; } = Path.Combine(".", ".babel", "state");

    /// <summary>Embedded mode: folder of the artifact store. Default <c>./.babel/artifacts</c>.</summary>
    public string ArtifactFolder { get; set; } = Path.Combine(".", ".babel", "artifacts");

    /// <summary>Cluster mode: blob container of the artifact store. Default <c>babel-artifacts</c>.</summary>
    public string ArtifactContainer { get; set; } = "babel-artifacts";

    /// <summary>
    /// Cluster mode: blob container of the job journals (each job's plan and its append-only shard events). Only silos use
    /// it; clients' SAS credentials need no access. Default <c>babel-jobs</c>.
    /// </summary>
    public string JournalContainer { get; set; } = "babel-jobs";

    /// <summary>
    /// How long a membership probe may take before it counts as missed; null keeps Orleans' default. Tests use 1 s with
    /// <see cref="NumMissedProbesLimit"/> 2 to evict a killed silo in about a second instead of about 12.
    /// </summary>
    public TimeSpan? ProbeTimeout { get; set; }

    /// <summary>Missed probes after which a silo is suspected dead; null keeps Orleans' default.</summary>
    public int? NumMissedProbesLimit { get; set; }

    /// <summary>
    /// Cluster mode: Orleans' Kubernetes hosting (<c>UseKubernetesHosting</c>: the silo is named after its pod, and silos whose
    /// pods are gone are declared dead through the Kubernetes API); membership stays on Azure Table. Null (default): on when
    /// the environment variables <c>POD_NAME</c> and <c>POD_NAMESPACE</c> are set, as deploy/k8s sets them from the downward API.
    /// See <see cref="KubernetesHosting"/>.
    /// </summary>
    public bool? KubernetesHosting { get; set; }
}
