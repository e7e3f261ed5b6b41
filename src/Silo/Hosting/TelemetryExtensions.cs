using OpenTelemetry.Metrics;

namespace Babel.Silo;

public static class TelemetryExtensions
{
    /// <summary>Orleans' runtime meter (messaging, activations, membership, …).</summary>
    public const string OrleansMeter = "Microsoft.Orleans";

    /// <summary>Every Babel meter, e.g. <c>Babel.Jobs</c> of the grains.</summary>
    public const string BabelMeters = "Babel.*";

    /// <summary>Collects OpenTelemetry metrics of Orleans and of every <c>Babel.*</c> meter for the Prometheus scrape at <c>/metrics</c>.</summary>
    public static IHostApplicationBuilder AddBabelTelemetry(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(OrleansMeter, BabelMeters)
            .AddPrometheusExporter());
        // Registered after OpenTelemetry's own hosted service, so the exporter listens when the zeros are recorded.
        builder.Services.AddHostedService<ZeroCounters>();
        return builder;
    }

    private sealed class ZeroCounters(IServiceProvider services) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            Babel.Modeling.Distillation.DistillationMetrics.ExportZeros();
            services.GetService<Babel.Grains.Training.TrainingMetrics>()?.ExportZeros();
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
