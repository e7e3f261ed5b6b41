using Babel.Grains.Engine;
using System.Net;
using Azure.Data.Tables;
using Azure.Storage.Blobs;
using Babel.Contracts;
using Babel.Grains;
using Babel.Storage.Artifacts;
using Babel.Storage.Journals;
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
    /// Adds the Orleans silo (clustering, listening endpoints, TLS, the <c>jobs</c> grain storage, membership timing), the artifact
    /// store, the options of <c>Babel:Cluster</c>, <c>Babel:Worker</c> and <c>Babel:Tls</c>, the readiness check, one device worker
    /// per compute device once the silo is active, and <see cref="TimeProvider.System"/>. <paramref name="configure"/> runs after
    /// configuration binding, so a caller such as the CLI's embedded mode can pin values (mode, folders, ports) whatever the
    /// configuration says.
    /// Bad options throw <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> here or at start.
    /// </summary>
    public static IHostApplicationBuilder AddBabelSilo(this IHostApplicationBuilder builder, Action<BabelClusterOptions>? configure = null)
    {
        var configuration = builder.Configuration;
        var cluster = BoundOptions.Bind(configuration, BabelClusterOptions.Section, new BabelClusterOptionsValidator(configuration), configure);
        BoundOptions.Bind(configuration, WorkerOptions.Section, new WorkerOptionsValidator());
        var tls = BoundOptions.Bind(configuration, BabelTlsOptions.Section, new BabelTlsOptionsValidator(configuration));

        var services = builder.Services;
        var clusterOptions = BoundOptions.AddValidated<BabelClusterOptions, BabelClusterOptionsValidator>(services, BabelClusterOptions.Section);
        if (configure is not null)
            clusterOptions.Configure(configure);
        BoundOptions.AddValidated<WorkerOptions, WorkerOptionsValidator>(services, WorkerOptions.Section);
        BoundOptions.AddValidated<BabelTlsOptions, BabelTlsOptionsValidator>(services, BabelTlsOptions.Section);

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ComputeDevices>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, SiloStartup>();
        services.AddHealthChecks().AddCheck<SiloActiveHealthCheck>(SiloActiveHealthCheck.Name, tags: [SiloActiveHealthCheck.ReadyTag]);

        var tables = StorageConnectionString.From(configuration, StorageService.Table);
        var blobs = StorageConnectionString.From(configuration, StorageService.Blob);
        AddArtifactStore(services, cluster, blobs);
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
            SiloEndpoints.Configure(silo, cluster);
            if (tls.Enabled)
                silo.UseBabelTls(tls, configuration);
            if (cluster.Mode == ClusterMode.Embedded)
                AddEmbeddedCluster(silo, cluster);
            else
                AddAzureCluster(silo, tables!, blobs!, KubernetesHosting.IsEnabled(cluster, configuration));
        });
        return builder;
    }

    private static void AddEmbeddedCluster(ISiloBuilder silo, BabelClusterOptions cluster)
    {
        silo.UseDevelopmentClustering(new IPEndPoint(SiloEndpoints.Advertised(cluster)!, cluster.PrimarySiloPort ?? cluster.SiloPort));
        silo.AddLocalFolderGrainStorage(JobStorageName, Path.GetFullPath(cluster.StateFolder));
    }

    private static void AddAzureCluster(ISiloBuilder silo, StorageConnectionString tables, StorageConnectionString blobs, bool kubernetesHosting)
    {
        // Kubernetes hosting names the silo after its pod and reconciles membership with the pods; clustering stays on Azure Table.
        if (kubernetesHosting)
            silo.UseKubernetesHosting();
        silo.UseAzureStorageClustering(o => o.TableServiceClient = new TableServiceClient(tables.Value));
        silo.AddAzureBlobGrainStorage(JobStorageName, o => o.BlobServiceClient = new BlobServiceClient(blobs.Value));
    }

    private static void AddArtifactStore(IServiceCollection services, BabelClusterOptions cluster, StorageConnectionString? blobs)
    {
        // Folders are validated in embedded mode only, so resolve this one only there.
        var artifactFolder = cluster.Mode == ClusterMode.Embedded ? Path.GetFullPath(cluster.ArtifactFolder) : null;
        services.AddSingleton<IArtifactStore>(_ => artifactFolder is not null ? new LocalFolderArtifactStore(artifactFolder) : AzureBlobArtifactStore.Create(blobs!.Value, cluster.ArtifactContainer));
        // Job journals sit beside the grain state: the state folder in embedded mode, their own container in cluster mode.
        var journalFolder = cluster.Mode == ClusterMode.Embedded ? Path.Combine(Path.GetFullPath(cluster.StateFolder), "journals") : null;
        services.AddSingleton<IJobJournal>(_ => journalFolder is not null ? new LocalFolderJobJournal(journalFolder) : AzureBlobJobJournal.Create(blobs!.Value, cluster.JournalContainer));
    }
}
