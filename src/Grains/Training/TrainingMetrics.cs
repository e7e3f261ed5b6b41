using System.Diagnostics.Metrics;
using Babel.Grains.Engine;

namespace Babel.Grains.Training;

/// <summary>
/// Instruments of data-parallel training (meter <see cref="JobMetrics.MeterName"/>, beside the job engine's), exported on
/// each silo's <c>/metrics</c> with the <c>worker</c> that trained. All counters, so their rates divide: tokens/s of a
/// worker is the rate of <see cref="Tokens"/>, its mean step time the rate of <see cref="StepSeconds"/> over the rate of
/// <see cref="Steps"/>, and the share of a step spent waiting for the gradient sum the rate of
/// <see cref="ExchangeSeconds"/> over that of <see cref="StepSeconds"/>.
/// </summary>
public sealed class TrainingMetrics : IDisposable
{
    private readonly Meter _meter;

    public TrainingMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(JobMetrics.MeterName);
        Tokens = _meter.CreateCounter<long>("babel.training.tokens", "{token}", "Target tokens a data-parallel rank trained on (its share of each global batch).");
        Steps = _meter.CreateCounter<long>("babel.training.steps", "{step}", "Optimizer steps of data-parallel ranks.");
        StepSeconds = _meter.CreateCounter<double>("babel.training.step.time", "s", "Wall time of data-parallel steps on a rank: forward, backward, gradient exchange.");
        ExchangeSeconds = _meter.CreateCounter<double>("babel.training.exchange.time", "s", "Time data-parallel ranks waited for the sum of their gradients over the group.");
        Regroups = _meter.CreateCounter<long>("babel.training.regroups", "{regroup}", "Times a rank rejoined its group after the group changed (a rank lost or returned).");
    }

    public Counter<long> Tokens { get; }
    public Counter<long> Steps { get; }
    public Counter<double> StepSeconds { get; }
    public Counter<double> ExchangeSeconds { get; }
    public Counter<long> Regroups { get; }

    /// <summary>The <c>worker</c> tag of a rank's series.</summary>
    public static KeyValuePair<string, object?> Worker(string worker) => new("worker", worker);

    /// <summary>Records zero on every counter, once the exporter listens, so each series exists before the first training step.</summary>
    public void ExportZeros()
    {
        Tokens.Add(0);
        Steps.Add(0);
        StepSeconds.Add(0);
        ExchangeSeconds.Add(0);
        Regroups.Add(0);
    }

    public void Dispose() => _meter.Dispose();
}
