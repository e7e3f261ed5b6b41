using System.Diagnostics.Metrics;
using System.Net;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>The real host in embedded mode, on free ports, answered over real HTTP.</summary>
public class SiloHostTests
{
    [Fact]
    public async Task Embedded_silo_becomes_ready_and_exports_orleans_and_babel_metrics()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var scratch = new ScratchFolder();
        // No device workers: this test is about the host, not the grains.
        await using var app = await EmbeddedSiloHost.StartAsync(scratch, cpuSlots: 0, timeout.Token);
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
