using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Babel.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>The real host in embedded mode, on free ports, answered over real HTTP.</summary>
public class SiloHostTests
{
    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task Embedded_silo_becomes_ready_and_exports_orleans_and_babel_metrics()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var scratch = new ScratchFolder();
        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Babel:Cluster:ClusterId"] = $"test-{Guid.NewGuid():N}",
            ["Babel:Cluster:SiloPort"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Babel:Cluster:GatewayPort"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Babel:Http:Urls"] = "http://127.0.0.1:0",
            // No device workers: this test is about the host, not the grains.
            ["Babel:Worker:CpuSlots"] = "0",
        });
        builder.AddBabelHttp();
        builder.AddBabelSilo(cluster =>
        {
            cluster.StateFolder = scratch.Combine("state");
            cluster.ArtifactFolder = scratch.Combine("artifacts");
        });
        builder.AddBabelTelemetry();
        await using var app = builder.Build();
        app.MapBabelEndpoints();

        await app.StartAsync(timeout.Token);
        using var http = new HttpClient { BaseAddress = new Uri(Assert.Single(app.Urls)) };

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/health/live", UriKind.Relative), timeout.Token)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/health/ready", UriKind.Relative), timeout.Token)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/health", UriKind.Relative), timeout.Token)).StatusCode);
        // Any meter named Babel.* is exported, as the grains' Babel.Jobs will be.
        using var meter = new Meter("Babel.HostTest");
        meter.CreateCounter<long>("babel.host_test.pings").Add(3);
        var metrics = (await http.GetStringAsync(new Uri("/metrics", UriKind.Relative), timeout.Token)).Split('\n');
        Assert.Contains(metrics, line => line.StartsWith("orleans_", StringComparison.Ordinal));
        Assert.Contains(metrics, line => line.StartsWith("babel_host_test_pings_total{", StringComparison.Ordinal) && line.EndsWith(" 3", StringComparison.Ordinal));

        await app.StopAsync(timeout.Token);
    }
}
