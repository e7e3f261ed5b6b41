using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling.Training;

/// <summary>
/// One logged training step: the loss, the learning rate, throughput (tokens/s, and examples/s where the examples are
/// the unit, as for a classifier), and the validation score when it was measured.
/// </summary>
public sealed record TrainingStep(
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("loss")] double Loss,
    [property: JsonPropertyName("learning_rate")] double LearningRate,
    [property: JsonPropertyName("tokens_per_second")] double TokensPerSecond,
    [property: JsonPropertyName("validation")] double? Validation = null,
    [property: JsonPropertyName("stage")] string? Stage = null,
    [property: JsonPropertyName("examples_per_second")] double? ExamplesPerSecond = null);

/// <summary>
/// A training run's per-step history, <c>history.jsonl</c> (one <see cref="TrainingStep"/> a line), and its plot
/// <c>loss.png</c>, beside the run's outputs. A resumed run keeps the lines up to the step it resumed from, so the
/// file always matches the weights.
/// </summary>
public sealed class TrainingHistory
{
    public const string FileName = "history.jsonl";
    public const string PlotFileName = "loss.png";
    private static readonly JsonSerializerOptions _json = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
    private readonly string _path;
    private readonly List<TrainingStep> _steps;

    private TrainingHistory(string path, List<TrainingStep> steps)
    {
        _path = path;
        _steps = steps;
    }

    public IReadOnlyList<TrainingStep> Steps => _steps;

    /// <summary>Opens <paramref name="directory"/>'s history keeping the steps up to <paramref name="resumedAtStep"/> (0: a fresh run).</summary>
    public static TrainingHistory Open(string directory, int resumedAtStep)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        var steps = new List<TrainingStep>();
        if (resumedAtStep > 0 && File.Exists(path))
        {
            foreach (var line in File.ReadLines(path))
            {
                // A run killed mid-write leaves a partial last line: it and anything unreadable are dropped.
                try
                {
                    if (JsonSerializer.Deserialize<TrainingStep>(line, _json) is { } step && step.Step <= resumedAtStep) steps.Add(step);
                }
                catch (JsonException)
                {
                    break;
                }
            }
        }
        AtomicFile.WriteAllText(path, string.Concat(steps.Select(s => JsonSerializer.Serialize(s, _json) + "\n")));
        return new TrainingHistory(path, steps);
    }

    /// <summary>Appends <paramref name="step"/> to the file at once, so a killed run keeps its history.</summary>
    public void Append(TrainingStep step)
    {
        _steps.Add(step);
        File.AppendAllText(_path, JsonSerializer.Serialize(step, _json) + "\n");
    }

    /// <summary>Writes <c>loss.png</c>: the training loss (and the validation score, on its own axis) against the step.</summary>
    public string SavePlot(string title, string validationLabel = "validation")
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("training loss");
        foreach (var stage in _steps.GroupBy(s => s.Stage))
        {
            var line = plot.Add.ScatterLine(stage.Select(s => (double)s.Step).ToArray(), stage.Select(s => s.Loss).ToArray());
            line.LegendText = stage.Key is null ? "loss" : $"loss ({stage.Key})";
            line.MarkerSize = 0;
        }
        var validated = _steps.Where(s => s.Validation is not null).ToList();
        if (validated.Count > 0)
        {
            var axis = plot.Axes.AddRightAxis();
            axis.LabelText = validationLabel;
            var scatter = plot.Add.Scatter(validated.Select(s => (double)s.Step).ToArray(), validated.Select(s => s.Validation!.Value).ToArray());
            scatter.Axes.YAxis = axis;
            scatter.LegendText = validationLabel;
        }
        plot.ShowLegend();
        var path = Path.Combine(Path.GetDirectoryName(_path)!, PlotFileName);
        PlotFiles.SavePng(plot, path, 800, 450);
        return path;
    }
}
