using System.Net.Sockets;
using Babel.Grains;
using Babel.Grains.Engine;
using Babel.Silo;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Orleans.Configuration;

namespace Babel.Client;

/// <summary>The job engine as a command sees it: grains, the artifact store and the job kinds. Embedded (the default) hosts a
/// silo in this process with state and artifacts under a local folder; cluster mode connects to running silos through
/// Azure Table membership and uses Azure Blob artifacts.</summary>
internal sealed class EngineConnection : IAsyncDisposable
{
    /// <summary>How long a cluster client tries to reach a gateway before giving up with a clear message.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(15);

    private readonly IHost _host;

    private EngineConnection(IHost host, int? siloPort)
    {
        _host = host;
        EmbeddedSiloPort = siloPort;
        Grains = host.Services.GetRequiredService<IGrainFactory>();
        Store = host.Services.GetRequiredService<IArtifactStore>();
        Jobs = new JobClient(Grains, Store, host.Services.GetRequiredService<JobKindCatalog>(), host.Services.GetService<ServedJobs>());
    }

    /// <summary>True when connected to a cluster's silos, false when hosting an embedded silo.</summary>
    public bool IsCluster => EmbeddedSiloPort is null;

    /// <summary>The embedded silo's port, which other silo processes on this host can join (<c>Babel:Cluster:PrimarySiloPort</c>).</summary>
    public int? EmbeddedSiloPort { get; }

    public IGrainFactory Grains { get; }
    public IArtifactStore Store { get; }
    public JobClient Jobs { get; }

    /// <param name="cluster">Connect to a cluster instead of hosting an embedded silo.</param>
    /// <param name="storeRoot">Embedded mode's folder for job state, artifacts and the worker cache.</param>
    /// <param name="workers">CPU workers of the embedded silo; 0 for commands that only read state.</param>
    /// <param name="cancellationToken">Stops waiting for the engine to start.</param>
    /// <param name="settings">Configuration that wins over the environment's (e.g. a benchmark's own <c>Babel:Cluster:ClusterId</c>).</param>
    public static async Task<EngineConnection> OpenAsync(bool cluster, string storeRoot, int workers, CancellationToken cancellationToken = default,
        IReadOnlyDictionary<string, string?>? settings = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = false, Args = [HostArguments.NoConfigurationReload] });
        if (settings is not null) builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        // Logs go to stderr: stdout carries the command's result (e.g. --output json).
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        // A cluster client reports an unreachable cluster as one sentence itself; Orleans' and the host's error logs would print pages of stack traces for it.
        builder.Logging.AddFilter("Orleans", cluster ? LogLevel.None : LogLevel.Error);
        if (cluster) builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        int? siloPort = cluster ? null : LoopbackPorts.Free();
        if (cluster) AddClusterClient(builder);
        else AddEmbeddedSilo(builder, Path.GetFullPath(storeRoot), workers, siloPort!.Value);
        var host = builder.Build();
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(ConnectTimeout + TimeSpan.FromSeconds(5));
            await host.StartAsync(timeout.Token);
        }
        catch (Exception e) when (cluster && e is not UserInputException)
        {
            host.Dispose();
            throw new UserInputException(
                $"Could not reach the Babel cluster '{builder.Configuration[$"{BabelClusterOptions.Section}:ClusterId"] ?? "babel"}' within {ConnectTimeout.TotalSeconds:F0} s ({RootCause(e)}); " +
                $"check that its silos run and that {StorageConnectionString.Key} points at its storage.", e);
        }
        return new EngineConnection(host, siloPort);
    }

    private static void AddEmbeddedSilo(HostApplicationBuilder builder, string root, int workers, int siloPort)
    {
        builder.Configuration[$"{WorkerOptions.Section}:CpuSlots"] = workers.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration[$"{WorkerOptions.Section}:CacheFolder"] = Path.Combine(root, "cache");
        // The command's own jobs only: a job that a stopped command left running in this store waits for its own rerun.
        builder.Services.AddSingleton(ServedJobs.Followed());
        builder.AddBabelSilo(o =>
        {
            o.Mode = ClusterMode.Embedded;
            o.StateFolder = Path.Combine(root, "state");
            o.ArtifactFolder = Path.Combine(root, "artifacts");
            // Free ports, so several embedded runs can share a machine.
            o.SiloPort = siloPort;
            o.GatewayPort = LoopbackPorts.Free();
        });
    }

    private static void AddClusterClient(HostApplicationBuilder builder)
    {
        // Each service's own connection string (a client's narrow SAS) wins over the shared one.
        if (StorageConnectionString.From(builder.Configuration, StorageService.Table) is not { } tables || StorageConnectionString.From(builder.Configuration, StorageService.Blob) is not { } blobs)
            throw new UserInputException($"--cluster needs Azure Storage; set the environment variable {StorageConnectionString.Key} to the cluster's connection string " +
                $"(or {StorageConnectionString.TableKey} and {StorageConnectionString.BlobKey} to SAS connection strings).");
        var options = new BabelClusterOptions();
        Microsoft.Extensions.Configuration.ConfigurationBinder.Bind(builder.Configuration.GetSection(BabelClusterOptions.Section), options);
        builder.Services.AddBabelJobKinds();
        builder.Services.AddSingleton<IArtifactStore>(_ => AzureBlobArtifactStore.Create(blobs.Value, options.ArtifactContainer));
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = options.ClusterId;
                o.ServiceId = options.ServiceId;
            });
            // Reads the gateways only, so a SAS with read permission on the membership table is enough.
            client.UseMembershipTableGateways(tables);
            client.UseBabelTls(builder.Configuration);
            client.UseConnectionRetryFilter(new BoundedConnectionRetry(ConnectTimeout).ShouldRetryAsync);
        });
    }

    /// <summary>The innermost useful message (e.g. "Connection refused (127.0.0.1:10002)"), not the Azure SDK's retry advice around it.</summary>
    private static string RootCause(Exception exception)
    {
        // A SocketException's message lacks the endpoint that the HTTP exception around it names.
        while ((exception is AggregateException { InnerExceptions.Count: > 0 } aggregate ? aggregate.InnerExceptions[0] : exception.InnerException) is { } inner and not SocketException)
            exception = inner;
        return exception.Message;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await _host.StopAsync(timeout.Token);
        }
        finally
        {
            _host.Dispose();
        }
    }
}
