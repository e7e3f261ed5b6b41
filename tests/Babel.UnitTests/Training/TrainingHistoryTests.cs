using System.Text.Json;
using Babel.Modeling.Training;
using Xunit;

namespace Babel.UnitTests.Training;

/// <summary><see cref="TrainingHistory"/> on its own, and the helpers the trainers' history tests share.</summary>
public class TrainingHistoryTests
{
    /// <summary>Every line of <paramref name="directory"/>'s <c>history.jsonl</c>.</summary>
    internal static List<TrainingStep> ReadHistory(string directory) =>
        [.. File.ReadAllLines(Path.Combine(directory, TrainingHistory.FileName)).Select(line => JsonSerializer.Deserialize<TrainingStep>(line)!)];

    /// <summary><c>loss.png</c> is a real PNG of some size.</summary>
    internal static void AssertPng(string directory)
    {
        var bytes = File.ReadAllBytes(Path.Combine(directory, TrainingHistory.PlotFileName));
        Assert.True(bytes.Length > 1000, $"{TrainingHistory.PlotFileName} is {bytes.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
    }

    [Fact]
    public void A_resumed_history_keeps_the_steps_up_to_the_checkpoint_and_drops_a_torn_last_line()
    {
        using var scratch = new ScratchFolder();
        var history = TrainingHistory.Open(scratch.Path, resumedAtStep: 0);
        for (var step = 1; step <= 5; step++) history.Append(new TrainingStep(step, 5.0 / step, 1e-3, 100, step == 4 ? 0.5 : null));
        File.AppendAllText(Path.Combine(scratch.Path, TrainingHistory.FileName), "{\"step\": 6, \"lo");

        var resumed = TrainingHistory.Open(scratch.Path, resumedAtStep: 4);
        Assert.Equal([1, 2, 3, 4], resumed.Steps.Select(s => s.Step));
        resumed.Append(new TrainingStep(5, 1.1, 1e-3, 100));
        var lines = ReadHistory(scratch.Path);
        Assert.Equal([1, 2, 3, 4, 5], lines.Select(s => s.Step));
        Assert.Equal(0.5, lines[3].Validation);
        Assert.Equal(1.1, lines[4].Loss);

        // A fresh run (no checkpoint) starts the history over.
        Assert.Empty(TrainingHistory.Open(scratch.Path, resumedAtStep: 0).Steps);
        Assert.Equal("", File.ReadAllText(Path.Combine(scratch.Path, TrainingHistory.FileName)));
    }

    [Fact]
    public void A_line_leaves_out_what_was_not_measured()
    {
        using var scratch = new ScratchFolder();
        var history = TrainingHistory.Open(scratch.Path, resumedAtStep: 0);
        history.Append(new TrainingStep(3, 1.5, 2e-3, 640.0, ExamplesPerSecond: 20.0));
        history.Append(new TrainingStep(4, 1.25, 2e-3, 640.0, Validation: 0.75));
        Assert.Equal(
            [
                "{\"step\":3,\"loss\":1.5,\"learning_rate\":0.002,\"tokens_per_second\":640,\"examples_per_second\":20}",
                "{\"step\":4,\"loss\":1.25,\"learning_rate\":0.002,\"tokens_per_second\":640,\"validation\":0.75}",
            ], File.ReadAllLines(Path.Combine(scratch.Path, TrainingHistory.FileName)));
    }
}
