using System.Globalization;
using Babel.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Babel.UnitTests.Silo;

/// <summary>The real silo host (HTTP, silo, telemetry) in embedded mode on free loopback ports, started for a test.</summary>
internal static class EmbeddedSiloHost
{
    /// <summary>
    /// Builds and starts the host with <paramref name="cpuSlots"/> device workers, its state, artifacts and cache in
    /// <paramref name="scratch"/>; <paramref name="services"/> adds test services (e.g. a job kind) before the silo, and
    /// <paramref name="settings"/> adds or replaces configuration (e.g. <c>Babel:Tls:*</c>).
    /// </summary>
    public static async Task<WebApplication> StartAsync(ScratchFolder scratch, int cpuSlots, CancellationToken cancellationToken, Action<IServiceCollection>? services = null,
        IReadOnlyDictionary<string, string?>? settings = null)
    {
        var builder = WebApplication.CreateBuilder();
        var values = new Dictionary<string, string?>
        {
            ["Babel:Cluster:ClusterId"] = $"test-{Guid.NewGuid():N}",
            ["Babel:Cluster:SiloPort"] = LoopbackPorts.Free().ToString(CultureInfo.InvariantCulture),
            ["Babel:Cluster:GatewayPort"] = LoopbackPorts.Free().ToString(CultureInfo.InvariantCulture),
            ["Babel:Http:Urls"] = "http://127.0.0.1:0",
            ["Babel:Worker:CpuSlots"] = cpuSlots.ToString(CultureInfo.InvariantCulture),
            ["Babel:Worker:CacheFolder"] = scratch.Combine("cache"),
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
            values[key] = value;
        builder.Configuration.AddInMemoryCollection(values);
        services?.Invoke(builder.Services);
        builder.AddBabelHttp();
        builder.AddBabelSilo(cluster =>
        {
            cluster.StateFolder = scratch.Combine("state");
            cluster.ArtifactFolder = scratch.Combine("artifacts");
        });
        builder.AddBabelTelemetry();
        var app = builder.Build();
        app.MapBabelEndpoints();
        await app.StartAsync(cancellationToken);
        return app;
    }

}
