using System.Text.Json;
using Babel.Modeling.Reports;
using Babel.Modeling.Text2Tree;
using Babel.Storage.Icpc;
using Babel.UnitTests.Training;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Text2Tree;

public class ClassificationMetricsTests
{
    [Fact]
    public void Macro_and_micro_F1_match_a_hand_computation()
    {
        // gold 0,1,1,2 / predicted 0,1,2,2:
        // label 0: TP 1 → F1 1; label 1: TP 1, FN 1 → 2/3; label 2: TP 1, FP 1 → 2/3; label 3 never occurs and is left out.
        var scores = ClassificationMetrics.Score([[0], [1], [1], [2]], [[0], [1], [2], [2]], trainCounts: [100, 10, 1, 7]);
        Assert.Equal(7.0 / 9.0, scores.MacroF1, 12);
        Assert.Equal(6.0 / 8.0, scores.MicroF1, 12);
        Assert.Equal(0.75, scores.Accuracy, 12);
        var buckets = scores.Buckets.ToDictionary(b => b.Name);
        Assert.Equal(1.0, buckets["head"].MacroF1, 12);
        Assert.Equal(2.0 / 3.0, buckets["medium"].MacroF1, 12);
        Assert.Equal(2.0 / 3.0, buckets["tail"].MacroF1, 12);
        Assert.Equal(1, buckets["tail"].Labels);
    }

    [Fact]
    public void Multilabel_sets_count_each_label_and_accuracy_is_exact_match()
    {
        // Record 1: gold {0,1}, predicted {0}; record 2: gold {2}, predicted {1,2}.
        // label 0: TP 1 → 1; label 1: FN 1, FP 1 → 0; label 2: TP 1 → 1. Micro: TP 2, FP 1, FN 1 → 4/6.
        var scores = ClassificationMetrics.Score([[0, 1], [2]], [[0], [1, 2]], trainCounts: [60, 60, 60]);
        Assert.Equal(2.0 / 3.0, scores.MacroF1, 12);
        Assert.Equal(4.0 / 6.0, scores.MicroF1, 12);
        Assert.Equal(0, scores.Accuracy);
    }

    [Fact]
    public void Buckets_follow_the_documented_train_count_thresholds()
    {
        Assert.Equal("tail", ClassificationMetrics.BucketOf(4));
        Assert.Equal("medium", ClassificationMetrics.BucketOf(5));
        Assert.Equal("medium", ClassificationMetrics.BucketOf(49));
        Assert.Equal("head", ClassificationMetrics.BucketOf(50));
    }
}

public class Text2TreeCommandTests
{
    private static string[] TrainArgs(string data, string output, string method, params string[] extra) =>
    [
        "text2tree", "train", "--data", data, "--method", method, "--steps", "6", "--batch-size", "8", "--eval-interval", "3",
        "--max-eval", "0", "--encoder-layers", "1", "--out", output, .. extra,
    ];

    [Fact]
    public void Train_writes_metrics_and_manifest_and_a_rerun_resumes_to_the_same_result()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"));
        var output = scratch.Combine("run");
        var (code, stdout, error) = Run(TrainArgs(data, output, "text2tree", "--lambda", "0.3", "--tau", "0.2"));
        Assert.True(code == 0, error);
        Assert.Contains("test macro-F1", stdout);
        var metrics = JsonSerializer.Deserialize<Text2TreeMetrics>(File.ReadAllText(Path.Combine(output, Text2TreeTrainer.MetricsFile)))!;
        Assert.Equal("text2tree", metrics.Method);
        Assert.Equal(0.3, metrics.Lambda);
        Assert.Equal(2, metrics.Evaluations.Count);
        Assert.InRange(metrics.Test.MacroF1, 0, 1);
        Assert.Equal(3, metrics.Test.Buckets.Count);
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, Text2TreeTrainer.ManifestFile)));
        Assert.Equal(6, manifest.RootElement.GetProperty("labels").GetInt32());
        Assert.Equal(3, manifest.RootElement.GetProperty("tree_levels").GetInt32());
        Assert.True(manifest.RootElement.GetProperty("label_parameters").GetInt64() > 0);

        // The run is complete: a rerun loads the checkpoint and reports the same scores.
        var (again, _, againError) = Run(TrainArgs(data, output, "text2tree", "--lambda", "0.3", "--tau", "0.2"));
        Assert.True(again == 0, againError);
        var rerun = JsonSerializer.Deserialize<Text2TreeMetrics>(File.ReadAllText(Path.Combine(output, Text2TreeTrainer.MetricsFile)))!;
        Assert.Equal(metrics.Test, rerun.Test with { Buckets = metrics.Test.Buckets });
        Assert.Equal(metrics.Evaluations, rerun.Evaluations);
        // The rerun trained no step: the run folder's history still holds each step once.
        Assert.Equal([1, 2, 3, 4, 5, 6], TrainingHistoryTests.ReadHistory(output).Select(h => h.Step));
        TrainingHistoryTests.AssertPng(output);
    }

    [Fact]
    public void An_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"));
        var options = new Text2TreeOptions
        {
            Method = Text2TreeMethods.Mixup, Steps = 6, BatchSize = 8, EvalInterval = 3, CheckpointInterval = 3, MaxEval = 0, EncoderLayers = 1, Seed = 4,
        };
        var whole = Text2TreeTrainer.Train(data, options, scratch.Combine("whole"));
        // Stop after the first checkpoint (step 3), then run again with the full step count.
        Assert.Throws<OperationCanceledException>(() => Text2TreeTrainer.Train(data, options, scratch.Combine("split"),
            new CancelAfter(3, out var cancellation), cancellation.Token));
        var resumed = Text2TreeTrainer.Train(data, options, scratch.Combine("split"));
        Assert.Equal(whole.Evaluations, resumed.Evaluations);
        Assert.Equal(whole.Test.MacroF1, resumed.Test.MacroF1);

        // The history holds every step once, whether the run was interrupted or not, with validation on evaluation steps.
        foreach (var run in new[] { "whole", "split" })
        {
            var history = TrainingHistoryTests.ReadHistory(scratch.Combine(run));
            Assert.Equal([1, 2, 3, 4, 5, 6], history.Select(h => h.Step));
            Assert.Equal([3, 6], history.Where(h => h.Validation is not null).Select(h => h.Step));
            Assert.Equal(whole.Evaluations.Select(e => e.MacroF1), history.Where(h => h.Validation is not null).Select(h => h.Validation!.Value));
            Assert.All(history, h => Assert.True(h.ExamplesPerSecond > 0 && h.TokensPerSecond > h.ExamplesPerSecond && h.LearningRate > 0, $"step {h.Step}"));
            TrainingHistoryTests.AssertPng(scratch.Combine(run));
        }
        // Losses depend on (seed, step) only: the resumed run's steps after the checkpoint equal the uninterrupted run's.
        Assert.Equal(TrainingHistoryTests.ReadHistory(scratch.Combine("whole")).Select(h => h.Loss), TrainingHistoryTests.ReadHistory(scratch.Combine("split")).Select(h => h.Loss));
    }

    [Theory]
    [InlineData("finetune", 0.9)]
    [InlineData("text2tree", 0.5)]
    [InlineData("text2tree-ssl", 0.5)]
    public void Training_learns_a_separable_toy_task_far_above_chance(string method, double minimumMacroF1)
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"), perCode: 40);
        var options = new Text2TreeOptions { Method = method, Steps = 60, BatchSize = 16, EvalInterval = 20, MaxEval = 0, EncoderLayers = 1, Seed = 1 };
        var metrics = Text2TreeTrainer.Train(data, options, scratch.Combine("run"));
        // Six codes: chance is about 1/6.
        Assert.True(metrics.Test.MacroF1 >= minimumMacroF1, $"{method} reached test macro-F1 {metrics.Test.MacroF1:F3}");
        // The methods with a label tree build it (its parameters train in their own group); the baselines have none.
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(scratch.Combine("run"), Text2TreeTrainer.ManifestFile)));
        Assert.Equal(Text2TreeMethods.UsesLabelTree(method), manifest.RootElement.GetProperty("label_parameters").GetInt64() > 0);
    }

    /// <summary>
    /// With encoder pretraining the encoder first learns next-token prediction on the training texts (its loss falls), the
    /// manifest says so, and the classifier still learns the task on top of it.
    /// </summary>
    [Fact]
    public void Self_supervised_pretraining_of_the_encoder_runs_on_the_training_texts_before_the_classifier()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"), perCode: 40);
        var options = new Text2TreeOptions { Method = "finetune", Steps = 60, BatchSize = 16, EvalInterval = 20, MaxEval = 0, EncoderLayers = 1, Seed = 1, EncoderPretrainSteps = 40 };
        var metrics = Text2TreeTrainer.Train(data, options, scratch.Combine("run"));
        var state = System.Text.Json.JsonSerializer.Deserialize<Modeling.Training.Pretrainer.TrainerState>(
            File.ReadAllText(Path.Combine(scratch.Combine("run"), Text2TreeTrainer.EncoderPretrainingFolder, "trainer.json")))!;
        Assert.Equal(40, state.Step);
        Assert.True(state.Losses.TakeLast(5).Average() < state.Losses.Take(5).Average() - 0.5, $"pretraining loss went from {state.Losses[0]:F3} to {state.Losses[^1]:F3}");
        Assert.Contains("40 steps of next-token pretraining", File.ReadAllText(Path.Combine(scratch.Combine("run"), "manifest.json")), StringComparison.Ordinal);
        Assert.True(metrics.Test.MacroF1 >= 0.9, $"test macro-F1 {metrics.Test.MacroF1:F3} after a pretrained encoder");
        Assert.Throws<Storage.UserInputException>(() => (options with { EncoderPretrainSteps = -1 }).Validate());
    }

    [Fact]
    public void Runs_in_parallel_threads_give_the_result_of_a_run_alone()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"));
        var options = new Text2TreeOptions
        {
            Method = Text2TreeMethods.Text2Tree, Steps = 4, BatchSize = 8, EvalInterval = 2, MaxEval = 0, EncoderLayers = 1, Seed = 9, LabelInit = "random",
        };
        var alone = Text2TreeTrainer.Train(data, options, scratch.Combine("alone"));
        // Two runs at once, as two grid workers in one process: other seeds drawing from torch's global generator meanwhile.
        var runs = new Text2TreeMetrics[2];
        Parallel.For(0, 2, i => runs[i] = Text2TreeTrainer.Train(data, options with { Seed = i == 0 ? 9 : 10 }, scratch.Combine($"parallel-{i}")));
        Assert.Equal(alone.Evaluations, runs[0].Evaluations);
        Assert.Equal(alone.Test.MacroF1, runs[0].Test.MacroF1);
    }

    private sealed class CancelAfter : IProgress<Text2TreeProgress>
    {
        private readonly int _step;
        private readonly CancellationTokenSource _source = new();

        public CancelAfter(int step, out CancellationTokenSource source)
        {
            _step = step;
            source = _source;
        }

        public void Report(Text2TreeProgress value)
        {
            if (value.Step == _step) _source.Cancel();
        }
    }

    [Theory]
    [InlineData("--lambda", "1.5", "--lambda must be in [0, 1]")]
    [InlineData("--tau", "0", "--tau must be a positive temperature")]
    [InlineData("--method", "svm", "unknown method 'svm'")]
    public void Bad_options_exit_2_with_one_sentence(string option, string value, string message)
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"), perCode: 3);
        var args = TrainArgs(data, scratch.Combine("run"), "text2tree").ToList();
        var at = args.IndexOf(option);
        if (at >= 0) args[at + 1] = value;
        else args.AddRange([option, value]);
        var (code, _, error) = Run([.. args]);
        Assert.Equal(2, code);
        Assert.Contains(message, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void Data_codes_reads_icd10_jsonl_with_a_tree_file_and_rejects_a_code_missing_from_the_tree()
    {
        using var scratch = new ScratchFolder();
        var input = scratch.Combine("notes.jsonl");
        File.WriteAllLines(input,
        [
            """{"text": "Bluthochdruck seit Jahren", "labels": ["I10"]}""",
            """{"id": "n2", "text": "Asthma bronchiale", "labels": ["j45.9"]}""",
            """{"text": "Asthma und Hochdruck", "labels": ["J45.9", "I10"]}""",
        ]);
        var tree = scratch.Combine("tree.tsv");
        File.WriteAllLines(tree, ["# code<TAB>description", "I10\tessential hypertension", "J45.9\tasthma, unspecified"]);
        var (code, stdout, error) = Run("data", "codes", "--input", input, "--tree", tree, "--scheme", "icd10", "--out", scratch.Combine("ds"));
        Assert.True(code == 0, error);
        Assert.Contains("3 records with 2 labels", stdout);
        var dataset = CodedTextDataset.Read(scratch.Combine("ds"));
        Assert.Equal(["J", "J45", "J45.9"], dataset.Labels.Labels.Single(l => l.Code == "J45.9").Path);
        Assert.Equal(["J45.9"], dataset.Records.Single(r => r.Id == "n2").Labels);
        Assert.True(Text2TreeData.Load(scratch.Combine("ds")).Multilabel);

        File.AppendAllLines(input, ["""{"text": "Diabetes", "labels": ["E11.9"]}"""]);
        var (bad, _, badError) = Run("data", "codes", "--input", input, "--tree", tree, "--scheme", "icd10", "--out", scratch.Combine("ds2"));
        Assert.Equal(2, bad);
        Assert.Contains("'E11.9', which is not in the label tree", badError);
        Assert.False(Directory.Exists(scratch.Combine("ds2")));
    }

    [Fact]
    public void Grid_runs_every_combination_as_a_shard_and_writes_the_results_table_and_plot()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"), perCode: 6);
        var output = scratch.Combine("grid");
        var (code, stdout, error) = Run("text2tree", "grid", "--data", data, "--methods", "text2tree,finetune", "--seeds", "2",
            "--lambda", "0.5", "--tau", "0.1,0.2", "--steps", "2", "--batch-size", "4", "--eval-interval", "2", "--max-eval", "0",
            "--encoder-layers", "1", "--out", output, "--store", scratch.Combine("store"));
        Assert.True(code == 0, error);
        using var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, GridReport.JsonFile)));
        // text2tree: 1 λ × 2 τ × 2 seeds; finetune: 2 seeds.
        Assert.Equal(6, results.RootElement.GetProperty("runs").GetArrayLength());
        Assert.Equal(3, results.RootElement.GetProperty("rows").GetArrayLength());
        Assert.Contains("| finetune | 2 |", stdout);
        Assert.Contains("text2tree λ=0.5 τ=0.2", File.ReadAllText(Path.Combine(output, GridReport.MarkdownFile)));
        Assert.True(new FileInfo(Path.Combine(output, GridReport.PlotFile)).Length > 1000);
        Assert.Contains("<table>", File.ReadAllText(Path.Combine(output, GridReport.HtmlFile)));
    }

    [Fact]
    public void A_grid_submitted_without_waiting_gives_by_babel_result_the_files_the_waiting_command_writes()
    {
        using var scratch = new ScratchFolder();
        var data = Text2TreeTestData.WriteIcd10Dataset(scratch.Combine("data"), perCode: 4);
        var store = scratch.Combine("store");
        string[] grid =
        [
            "text2tree", "grid", "--data", data, "--methods", "text2tree,finetune", "--seeds", "1", "--lambda", "0.5", "--tau", "0.1",
            "--steps", "2", "--batch-size", "4", "--eval-interval", "2", "--max-eval", "0", "--encoder-layers", "1", "--store", store,
        ];
        var (code, jobId, error) = Run([.. grid, "--no-wait"]);
        Assert.True(code == 0, error);
        jobId = jobId.Trim();
        Assert.StartsWith("text2tree-grid-", jobId, StringComparison.Ordinal);

        (code, var watched, error) = Run("watch", jobId, "--store", store);
        Assert.True(code == 0, error);
        Assert.Contains("Succeeded", watched, StringComparison.Ordinal);
        (code, var summary, error) = Run("result", jobId, "--out", scratch.Combine("result"), "--store", store);
        Assert.True(code == 0, error);
        Assert.Contains($"text2tree grid {jobId}: 2 runs in 2 configurations", summary, StringComparison.Ordinal);

        // The same command waiting: the job is done, so it writes its outputs from the same shards.
        (code, var table, error) = Run([.. grid, "--out", scratch.Combine("waited")]);
        Assert.True(code == 0, error);
        Assert.Contains("| finetune | 1 |", table, StringComparison.Ordinal);
        string[] files = [GridReport.JsonFile, GridReport.MarkdownFile, GridReport.HtmlFile, GridReport.PlotFile];
        Assert.Equal(files.Order(StringComparer.Ordinal), Directory.GetFiles(scratch.Combine("result")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var file in files)
        {
            Assert.True(File.ReadAllBytes(Path.Combine(scratch.Combine("waited"), file)).SequenceEqual(File.ReadAllBytes(Path.Combine(scratch.Combine("result"), file))), $"{file} differs");
        }
        using var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(scratch.Combine("result"), GridReport.JsonFile)));
        var setup = results.RootElement.GetProperty("setup");
        Assert.Equal(jobId, setup.GetProperty("job").GetString());
        Assert.Equal(Path.GetFullPath(data), setup.GetProperty("data").GetString());
    }

    [Fact]
    public void Mean_and_sample_std_over_seeds()
    {
        var value = MeanStd.Of([1.0, 2.0, 3.0]);
        Assert.Equal(2.0, value.Mean, 12);
        Assert.Equal(1.0, value.Std, 12);
    }
}
