using Babel.Grains.Engine;
using System.Net;
using Azure.Data.Tables;
using Azure.Storage.Blobs;
using Babel.Contracts;
using Babel.Grains;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Orleans.Configuration;
using Orleans.Serialization;

namespace Babel.Silo;

/// <summary>Registers the Babel silo on any host builder: the <c>Babel.Silo</c> exe, and the CLI's embedded mode in-process.</summary>
public static class SiloHostingExtensions
{
    /// <summary>Name of the grain storage that holds job state (<c>[PersistentState("job", "jobs")]</c>).</summary>
    public const string JobStorageName = "jobs";

    /// <summary>
    /// Adds the Orleans silo (clustering, the <c>jobs</c> grain storage, membership timing), the artifact store, the options of
    /// <c>Babel:Cluster</c> and <c>Babel:Worker</c>, the readiness check, one device worker per compute device once the silo is
    /// active, and <see cref="TimeProvider.System"/>. <paramref name="configure"/> runs after configuration binding, so a caller
    /// such as the CLI's embedded mode can pin values (mode, folders, ports) whatever the configuration says.
    /// Bad options throw <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> here or at start.
    /// </summary>
    public static IHostApplicationBuilder AddBabelSilo(this IHostApplicationBuilder builder, Action<BabelClusterOptions>? configure = null)
    {
        var configuration = builder.Configuration;
        var cluster = BoundOptions.Bind(configuration, BabelClusterOptions.Section, new BabelClusterOptionsValidator(configuration), configure);
        BoundOptions.Bind(configuration, WorkerOptions.Section, new WorkerOptionsValidator());

        var services = builder.Services;
        var clusterOptions = BoundOptions.AddValidated<BabelClusterOptions, BabelClusterOptionsValidator>(services, BabelClusterOptions.Section);
        if (configure is not null)
            clusterOptions.Configure(configure);
        BoundOptions.AddValidated<WorkerOptions, WorkerOptionsValidator>(services, WorkerOptions.Section);

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ComputeDevices>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, SiloStartup>();
        services.AddHealthChecks().AddCheck<SiloActiveHealthCheck>(SiloActiveHealthCheck.Name, tags: [SiloActiveHealthCheck.ReadyTag]);

        var connection = StorageConnectionString.From(configuration);
        AddArtifactStore(services, cluster, connection);
        builder.UseOrleans(silo =>
        {
            // Grain metadata is found from the entry assembly's dependencies; name ours so a test host or the CLI finds them too.
            silo.Services.AddSerializer(serializer => serializer.AddAssembly(typeof(IDeviceWorkerGrain).Assembly));
            silo.AddBabelGrains();
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = cluster.ClusterId;
                o.ServiceId = cluster.ServiceId;
            });
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                if (cluster.ProbeTimeout is { } probeTimeout)
                    o.ProbeTimeout = probeTimeout;
                if (cluster.NumMissedProbesLimit is { } missedProbes)
                    o.NumMissedProbesLimit = missedProbes;
            });
            if (cluster.Mode == ClusterMode.Embedded)
                AddEmbeddedCluster(silo, cluster);
            else
                AddAzureCluster(silo, cluster, connection!, KubernetesHosting.IsEnabled(cluster, configuration));
        });
        return builder;
    }

    private static void AddEmbeddedCluster(ISiloBuilder silo, BabelClusterOptions cluster)
    {
        var address = IPAddress.Parse(cluster.AdvertisedAddress ?? IPAddress.Loopback.ToString());
        silo.UseDevelopmentClustering(new IPEndPoint(address, cluster.PrimarySiloPort ?? cluster.SiloPort));
        silo.ConfigureEndpoints(address, cluster.SiloPort, cluster.GatewayPort);
        silo.AddLocalFolderGrainStorage(JobStorageName, Path.GetFullPath(cluster.StateFolder));
    }

    private static void AddAzureCluster(ISiloBuilder silo, BabelClusterOptions cluster, StorageConnectionString connection, bool kubernetesHosting)
    {
        // Kubernetes hosting names the silo after its pod and reconciles membership with the pods; clustering stays on Azure Table.
        if (kubernetesHosting)
            silo.UseKubernetesHosting();
        if (cluster.AdvertisedAddress is { } advertised)
            silo.ConfigureEndpoints(IPAddress.Parse(advertised), cluster.SiloPort, cluster.GatewayPort, listenOnAnyHostAddress: true);
        else
            silo.ConfigureEndpoints(cluster.SiloPort, cluster.GatewayPort, listenOnAnyHostAddress: true);
        silo.UseAzureStorageClustering(o => o.TableServiceClient = new TableServiceClient(connection.Value));
        silo.AddAzureBlobGrainStorage(JobStorageName, o => o.BlobServiceClient = new BlobServiceClient(connection.Value));
    }

    private static void AddArtifactStore(IServiceCollection services, BabelClusterOptions cluster, StorageConnectionString? connection)
    {
        // Folders are validated in embedded mode only, so resolve this one only there.
        var artifactFolder = cluster.Mode == ClusterMode.Embedded ? Path.GetFullPath(cluster.ArtifactFolder) : null;
        services.AddSingleton<IArtifactStore>(_ => artifactFolder is not null ? new LocalFolderArtifactStore(artifactFolder) : AzureBlobArtifactStore.Create(connection!.Value, cluster.ArtifactContainer));
    }
}
