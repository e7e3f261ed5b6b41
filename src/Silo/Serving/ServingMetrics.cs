using System.Diagnostics.Metrics;

namespace Babel.Silo.Serving;

/// <summary>Instruments of <c>babel serve</c> (meter <c>Babel.Serving</c>), exported on <c>/metrics</c>.</summary>
public static class ServingMetrics
{
    public const string MeterName = "Babel.Serving";
    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> Requests = Meter.CreateCounter<long>("babel.serve.requests", "{request}",
        "Completion requests answered, by outcome (ok, invalid, too_large, queue_full, abandoned, failed).");
    public static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("babel.serve.tokens.prompt", "{token}", "Prompt tokens of the rows generated.");
    public static readonly Counter<long> GeneratedTokens = Meter.CreateCounter<long>("babel.serve.tokens.generated", "{token}",
        "Tokens the generation loop computed (batch rows × decoding steps, rows that already ended included): the work done.");
    public static readonly Counter<long> AbandonedRows = Meter.CreateCounter<long>("babel.serve.rows.abandoned", "{row}",
        "Rows whose client disconnected before they ended; generation stops once every row of a batch has ended or been abandoned.");
    public static readonly UpDownCounter<long> QueuedRequests = Meter.CreateUpDownCounter<long>("babel.serve.queue.requests", "{request}",
        "Requests waiting for the generation thread.");

    /// <summary>Records zero on every counter, so each series exists from the start and rates evaluate before the first request.</summary>
    internal static void ExportZeros()
    {
        foreach (var counter in new[] { Requests, PromptTokens, GeneratedTokens, AbandonedRows }) counter.Add(0);
        QueuedRequests.Add(0);
    }

    /// <summary>Runs <see cref="ExportZeros"/> once the exporter listens (registered after the telemetry's own hosted service).</summary>
    internal sealed class ZeroCounters : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            ExportZeros();
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
