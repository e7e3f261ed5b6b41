using System.Text.Json.Nodes;
using Babel.Modeling.Distillation;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary>
/// The method's claim on data a tiny student can learn in minutes: chain-of-thought distillation beats answer-only
/// fine-tuning, averaged over seeds, at equal steps. Runs the real command (the grid job, two workers).
/// </summary>
public class StudentLearnabilityTests
{
    [Fact]
    public void Multi_cot_distillation_beats_answer_only_fine_tuning_on_generated_word_problems_averaged_over_seeds()
    {
        using var scratch = new ScratchFolder();
        var data = scratch.Combine("arith");
        ArithmeticWordProblems.Write(data, new ArithmeticProblemOptions());
        var output = scratch.Combine("grid");
        var (code, stdout, stderr) = CliRun.Run("distill", "grid", "--data", data, "--settings", "standard,multi-cot", "--labels", "gt", "--students", "micro",
            "--seeds", "2", "--steps", "500", "--eval-interval", "250", "--workers", "2", "--threads", "1", "--store", scratch.Combine("store"), "--out", output);
        Assert.True(code == 0, stderr);
        var results = JsonNode.Parse(File.ReadAllText(Path.Combine(output, StudentGridReport.JsonFile)))!;
        var runs = results["runs"]!.AsArray().Select(r => (Setting: (string)r!["options"]!["setting"]!, Accuracy: (double)r["test_accuracy"]!)).ToList();
        Assert.Equal(4, runs.Count);
        double Mean(string setting) => runs.Where(r => r.Setting == setting).Average(r => r.Accuracy);
        var standard = Mean(StudentSettings.Standard);
        var multiCot = Mean(StudentSettings.MultiCot);
        Assert.True(multiCot > standard + 0.02, $"multi-cot {multiCot:P1} against standard {standard:P1}\n{stdout}");
        Assert.StartsWith("Multi-cot beats standard fine-tuning", (string)results["reading"]!);
    }
}
