using Microsoft.AspNetCore.Diagnostics.HealthChecks;

namespace Babel.Silo;

public static class HttpExtensions
{
    /// <summary>
    /// Listens on <see cref="HttpOptions.Urls"/> (<c>Babel:Http:Urls</c>, default <c>http://127.0.0.1:8080</c>) unless ASP.NET Core's
    /// own <c>--urls</c> / <c>ASPNETCORE_URLS</c> is given, which wins.
    /// </summary>
    public static WebApplicationBuilder AddBabelHttp(this WebApplicationBuilder builder)
    {
        var http = BoundOptions.Bind(builder.Configuration, HttpOptions.Section, new HttpOptionsValidator());
        BoundOptions.AddValidated<HttpOptions, HttpOptionsValidator>(builder.Services, HttpOptions.Section);
        if (string.IsNullOrWhiteSpace(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
            builder.WebHost.UseUrls(http.Urls);
        return builder;
    }

    /// <summary>
    /// <c>/health/live</c> (the process answers), <c>/health/ready</c> and <c>/health</c> (this silo is Active in the cluster;
    /// 503 otherwise), <c>/metrics</c> (Prometheus text). Needs <see cref="SiloHostingExtensions.AddBabelSilo"/> and
    /// <see cref="TelemetryExtensions.AddBabelTelemetry"/>.
    /// </summary>
    public static IEndpointRouteBuilder MapBabelEndpoints(this IEndpointRouteBuilder endpoints)
    {
        var ready = new HealthCheckOptions { Predicate = check => check.Tags.Contains(SiloActiveHealthCheck.ReadyTag) };
        endpoints.MapHealthChecks(HealthEndpoints.Live, new HealthCheckOptions { Predicate = _ => false });
        endpoints.MapHealthChecks(HealthEndpoints.Ready, ready);
        endpoints.MapHealthChecks(HealthEndpoints.Health, ready);
        endpoints.MapPrometheusScrapingEndpoint(HealthEndpoints.Metrics);
        return endpoints;
    }
}
