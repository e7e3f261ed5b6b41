using System.Text.Json;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary><c>babel distill train</c>'s per-step history: both stages, validation where measured, and a killed run's history resumed exactly.</summary>
public class StudentHistoryTests
{
    private static List<TrainingStep> Read(string folder) =>
        [.. File.ReadAllLines(Path.Combine(folder, TrainingHistory.FileName)).Select(l => JsonSerializer.Deserialize<TrainingStep>(l)!)];

    /// <summary>Everything but the speed, which depends on the machine.</summary>
    private static List<TrainingStep> WithoutSpeed(IEnumerable<TrainingStep> steps) => [.. steps.Select(s => s with { TokensPerSecond = 0 })];

    [Fact]
    public void Distill_train_writes_both_stages_with_validation_and_a_plot()
    {
        using var scratch = new ScratchFolder();
        var folder = StudentTrainingTests.SmallSet(scratch);
        var output = scratch.Combine("run");
        var (code, stdout, stderr) = CliRun.Run("distill", "train", "--data", folder, "--setting", "cot-se", "--steps", "20", "--self-evaluation-steps", "10",
            "--eval-interval", "10", "--batch-size", "8", "--threads", "1", "--tokenizer-vocab", "320", "--out", output);
        Assert.True(code == 0, stderr);
        Assert.Contains(TrainingHistory.FileName, stdout);

        var history = Read(output);
        Assert.Equal(Enumerable.Range(1, 30), history.Select(s => s.Step));
        Assert.Equal([.. Enumerable.Repeat("self-evaluation", 10), .. Enumerable.Repeat("distillation", 20)], history.Select(s => s.Stage));
        Assert.All(history, s => Assert.True(double.IsFinite(s.Loss) && s.LearningRate > 0 && s.TokensPerSecond > 0, $"step {s.Step}"));
        // Validation accuracy on the evaluated steps of the distillation stage (10 and 20, i.e. 20 and 30 overall), as metrics.json has it.
        var metrics = JsonSerializer.Deserialize<StudentMetrics>(File.ReadAllText(Path.Combine(output, StudentTrainer.MetricsFile)))!;
        Assert.Equal(metrics.Evaluations.Select(e => (10 + e.Step, (double?)e.Accuracy)), history.Where(s => s.Validation is not null).Select(s => (s.Step, s.Validation)));
        Assert.Equal([20, 30], history.Where(s => s.Validation is not null).Select(s => s.Step));
        Assert.True(new FileInfo(Path.Combine(output, TrainingHistory.PlotFileName)).Length > 1000);
    }

    [Fact]
    public void A_killed_run_resumes_its_history_to_the_lines_of_an_uninterrupted_run()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(StudentTrainingTests.SmallSet(scratch));
        var options = StudentTrainingTests.Quick with { Setting = StudentSettings.CotSelfEvaluation };
        StudentTrainer.TrainToFolder(corpus, options, scratch.Combine("whole"));
        var whole = WithoutSpeed(Read(scratch.Combine("whole")));
        Assert.Equal(30, whole.Count);

        // Killed in stage 1 before its only checkpoint (it starts over), and in stage 2 after its first (it resumes at step 10 of 20).
        foreach (var (stage, step) in new[] { (1, 5), (2, 15) })
        {
            var folder = scratch.Combine($"killed-{stage}");
            using (var cancellation = new CancellationTokenSource())
            {
                var progress = new SynchronousProgress<StudentProgress>(p =>
                {
                    if (p.Stage == stage && p.Step == step) cancellation.Cancel();
                });
                Assert.ThrowsAny<OperationCanceledException>(() => StudentTrainer.TrainToFolder(corpus, options, folder, progress, cancellation.Token));
            }
            Assert.Equal(stage == 1 ? step : 10 + step, Read(folder).Count);
            StudentTrainer.TrainToFolder(corpus, options, folder);
            Assert.Equal(whole, WithoutSpeed(Read(folder)));
            // A rerun of the finished run trains nothing and keeps the history as it is.
            var before = File.ReadAllText(Path.Combine(folder, TrainingHistory.FileName));
            StudentTrainer.TrainToFolder(corpus, options, folder);
            Assert.Equal(before, File.ReadAllText(Path.Combine(folder, TrainingHistory.FileName)));
            Assert.True(File.Exists(Path.Combine(folder, TrainingHistory.PlotFileName)));
        }
    }
}
