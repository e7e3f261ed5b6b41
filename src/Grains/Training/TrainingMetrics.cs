using System.Diagnostics.Metrics;
using Babel.Grains.Engine;

namespace Babel.Grains.Training;

/// <summary>
/// Instruments of data-parallel training (meter <see cref="JobMetrics.MeterName"/>, beside the job engine's), exported on
/// each silo's <c>/metrics</c> with the <c>worker</c> that trained: tokens (their rate is a worker's tokens/s), step time,
/// gradient-exchange time, and how often a group formed again after losing a rank.
/// </summary>
public sealed class TrainingMetrics : IDisposable
{
    private readonly Meter _meter;

    public TrainingMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(JobMetrics.MeterName);
        Tokens = _meter.CreateCounter<long>("babel.training.tokens", "{token}", "Target tokens a rank trained on (its share of each global batch).");
        StepDuration = _meter.CreateHistogram<double>("babel.training.step.duration", "s", "Wall time of one data-parallel step on a rank: forward, backward, exchange, optimizer.");
        ExchangeDuration = _meter.CreateHistogram<double>("babel.training.exchange.duration", "s", "Time a rank waited for the sum of a step's gradients over its group.");
        Regroups = _meter.CreateCounter<long>("babel.training.regroups", "{regroup}", "Times a rank rejoined its group after the group changed (a rank lost or returned).");
    }

    public Counter<long> Tokens { get; }
    public Histogram<double> StepDuration { get; }
    public Histogram<double> ExchangeDuration { get; }
    public Counter<long> Regroups { get; }

    /// <summary>The <c>worker</c> tag of a rank's series.</summary>
    public static KeyValuePair<string, object?> Worker(string worker) => new("worker", worker);

    public void Dispose() => _meter.Dispose();
}
