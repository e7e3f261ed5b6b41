using System.Text.Json;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Training;
using Xunit;
using Xunit.Abstractions;

namespace Babel.UnitTests.Distillation;

/// <summary>
/// Data-parallel student training checked against its independent computation, one rank accumulating the same
/// micro-batches: two ranks on threads of this process, summing through <see cref="InProcessGradientExchange"/>, end both
/// stages with the same weights, validation evaluations and test metrics; and close to the one-process trainer. In
/// DiLoCo mode (<c>--sync-every H</c>) a rank's local objective is the plain objective of its own rows (the loop and outer
/// step around it are <c>Pretrainer</c>'s, checked against a plain loop in <c>DiLoCoTrainingTests</c>), and
/// <c>distill train --data-parallel 2 --sync-every H</c> ends where two DiLoCo ranks in this process do.
/// </summary>
[Collection(TorchThreadsCollection.Name)]
public class DataParallelStudentTests(ITestOutputHelper output)
{
    private static (StudentMetrics Metrics, IReadOnlyList<StudentPrediction> Predictions) Ranks(int ranks, int microBatches, StudentCorpus corpus, StudentOptions options,
        string directory, List<int> checkpoints)
    {
        var exchange = new InProcessGradientExchange(ranks);
        var results = new (StudentMetrics, IReadOnlyList<StudentPrediction>)?[ranks];
        var failures = new Exception?[ranks];
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try
            {
                var rank = new DataParallelRank(r, ranks, microBatches, exchange.ForRank(r));
                results[r] = StudentTrainer.TrainRank(corpus, options, Path.Combine(directory, $"rank{r}"), rank, step => { lock (checkpoints) checkpoints.Add(step); });
            }
            catch (Exception e)
            {
                failures[r] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (failures.FirstOrDefault(f => f is not null) is { } failure) throw failure;
        Assert.All(results.Skip(1), r => Assert.Null(r));
        return Assert.NotNull(results[0]);
    }

    private static Dictionary<string, float[]> Weights(string folder)
    {
        using var checkpoint = ModelCheckpoint.Load(folder);
        return checkpoint.Tensors.ToDictionary(p => p.Key, p => p.Value.to(TorchSharp.torch.float32).data<float>().ToArray(), StringComparer.Ordinal);
    }

    [Fact]
    public void Two_ranks_train_both_stages_to_the_bits_of_one_rank_with_the_same_micro_batches()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(StudentTrainingTests.SmallSet(scratch));
        var options = StudentTrainingTests.Quick with { Setting = StudentSettings.MultiCotSelfEvaluation };
        var oneCheckpoints = new List<int>();
        var one = Ranks(1, 2, corpus, options, scratch.Combine("one"), oneCheckpoints);
        var two = Ranks(2, 2, corpus, options, scratch.Combine("two"), []);

        static string Json(StudentMetrics m) => JsonSerializer.Serialize(m with { TrainTokensPerSecond = 0 });
        Assert.Equal(Json(one.Metrics), Json(two.Metrics));
        Assert.Equal(one.Predictions.Select(p => p.Output), two.Predictions.Select(p => p.Output));
        var stage = StudentTrainer.DistillationFolder;
        var oneWeights = Weights(Path.Combine(scratch.Combine("one"), "rank0", stage));
        var twoWeights = Weights(Path.Combine(scratch.Combine("two"), "rank0", stage));
        Assert.Equal(0, DataParallelTrainingTests.MaxDifference(oneWeights, twoWeights));
        // The distillation stage moved the weights far from where the self-evaluation stage left them: agreement is not trivial.
        var moved = DataParallelTrainingTests.MaxDifference(Weights(Path.Combine(scratch.Combine("two"), "rank0", StudentTrainer.SelfEvaluationFolder)), twoWeights);
        Assert.True(moved > 1e-2, $"the distillation stage moved the weights by at most {moved:E2}");
        // The leader's checkpoints are named by the steps of both stages in a row: 10 self-evaluation steps, then 20.
        Assert.Equal([10, 20, 30], oneCheckpoints);

        // Against the one-process trainer (one forward of the whole batch per task): the same training, not the same bits.
        var (plain, _) = StudentTrainer.Train(corpus, options, scratch.Combine("plain"));
        var plainWeights = Weights(Path.Combine(scratch.Combine("plain"), stage));
        var difference = DataParallelTrainingTests.MaxDifference(plainWeights, twoWeights);
        output.WriteLine($"max |Δw| against the one-process trainer after {options.SelfEvaluationSteps} + {options.Steps} steps: {difference:E2}; " +
            $"validation accuracy {plain.ValidationAccuracy:P1} vs {two.Metrics.ValidationAccuracy:P1}");
        // Measured: 1.8e-4 with the whole-evaluation stage 1, 1.6e-3 with the label-rationale one (two forwards per block); 30 steps of AdamW amplify rounding.
        Assert.True(difference <= 1e-2, $"max |Δw| = {difference:E2} against the one-process trainer");
    }

    [Fact]
    public void Distill_train_on_two_ranks_writes_the_one_rank_layout_and_the_bits_of_one_worker()
    {
        using var scratch = new ScratchFolder();
        var folder = StudentTrainingTests.SmallSet(scratch);
        string[] Train(string output, params string[] more) =>
            ["distill", "train", "--data", folder, "--setting", "cot-se", "--student", "micro", "--steps", "20", "--self-evaluation-steps", "10", "--eval-interval", "10", "--batch-size", "8",
                "--threads", "1", "--tokenizer-vocab", "320", "--out", scratch.Combine(output), .. more];
        var two = CliRun.Run(Train("two", "--data-parallel", "2", "--store", scratch.Combine("store-two"), "--lease-seconds", "6"));
        Assert.True(two.Code == 0, two.Error);
        Assert.Contains("2 data-parallel ranks", two.Output, StringComparison.Ordinal);
        // One worker: the group forms with one rank after the form timeout, which accumulates both micro-batches.
        var one = CliRun.Run(Train("one-worker", "--data-parallel", "2", "--workers", "1", "--store", scratch.Combine("store-one"), "--lease-seconds", "6"));
        Assert.True(one.Code == 0, one.Error);
        var plain = CliRun.Run(Train("plain"));
        Assert.True(plain.Code == 0, plain.Error);

        static string[] Files(string root) => [.. Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal)];
        Assert.Equal(Files(scratch.Combine("plain")), Files(scratch.Combine("two")));
        Assert.Equal(File.ReadAllBytes(scratch.Combine("one-worker/model/model.safetensors")), File.ReadAllBytes(scratch.Combine("two/model/model.safetensors")));
        static string Metrics(string folder) => JsonSerializer.Serialize(JsonSerializer.Deserialize<StudentMetrics>(File.ReadAllText(Path.Combine(folder, StudentTrainer.MetricsFile)))! with { TrainTokensPerSecond = 0 });
        Assert.Equal(Metrics(scratch.Combine("one-worker")), Metrics(scratch.Combine("two")));
        Assert.Equal(30, File.ReadAllLines(scratch.Combine("two/history.jsonl")).Length);

        // The same run as the one run of a grid whose runs have two ranks each: the same training, evaluations and scores.
        var grid = CliRun.Run(["distill", "grid", "--data", folder, "--settings", "cot-se", "--students", "micro", "--seeds", "1", "--steps", "20", "--self-evaluation-steps", "10",
            "--eval-interval", "10", "--batch-size", "8", "--threads", "1", "--tokenizer-vocab", "320", "--data-parallel", "2", "--out", scratch.Combine("grid"),
            "--store", scratch.Combine("store-grid"), "--lease-seconds", "12"]);
        Assert.True(grid.Code == 0, grid.Error);
        var run = Assert.Single(StudentGridReport.Load(scratch.Combine("grid")).Runs);
        var direct = JsonSerializer.Deserialize<StudentMetrics>(File.ReadAllText(scratch.Combine("two/metrics.json")))!;
        Assert.Equal(direct.Options with { Student = "micro" }, run.Options);
        Assert.Equal(direct.Evaluations, run.Evaluations);
        Assert.Equal((direct.BestStep, direct.ValidationAccuracy, direct.TestAccuracy), (run.BestStep, run.ValidationAccuracy, run.TestAccuracy));
        Assert.Empty(Directory.GetFiles(scratch.Combine("store-grid"), "checkpoint-*.zip", SearchOption.AllDirectories));
    }

    [Fact]
    public void A_DiLoCo_rank_follows_the_plain_objective_of_its_own_rows_and_reports_its_share_of_the_global_loss()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var model = new CausalLanguageModel(ModelPresets.Create("micro", vocabSize: 64, bosId: 1, eosId: 2, padId: 0));
        model.InitializeWeights(3);
        var random = new Random(7);
        TokenizedInstruction Row(int prompt, int length) => new([1, .. Enumerable.Range(1, length).Select(_ => (long)random.Next(3, 64))], prompt);
        List<(TokenizedInstruction Label, TokenizedInstruction? Rationale)> batch = [.. Enumerable.Range(0, 6).Select(i => (Row(3 + i % 2, 8 + i), i % 3 == 0 ? null : Row(4, 10 + i)))];
        var rank = new DataParallelRank(1, 2, 2, new InProcessGradientExchange(2).ForRank(1));
        Dictionary<string, float[]> Gradients() => model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.data<float>().ToArray(), StringComparer.Ordinal);

        // The plain objective of rank 1's rows, the second half of the batch: α·(mean over its answer tokens) + (1 − α)·(mean over its rationale tokens).
        var own = batch.Skip(3).ToList();
        model.zero_grad();
        StudentTrainer.Objective(model, [.. own.Select(b => b.Label)], [.. own.Where(b => b.Rationale is not null).Select(b => b.Rationale!)], 0.6, padId: 0).backward();
        var plain = Gradients();
        model.zero_grad();
        var (local, localTokens) = StudentTrainer.ObjectiveShare(model, batch, 0.6, 0, rank, local: true);
        var difference = DataParallelTrainingTests.MaxDifference(plain, Gradients());
        output.WriteLine($"max |Δ gradient| against the plain objective of the rank's rows: {difference:E2}");
        Assert.True(difference <= 1e-6, $"max |Δ gradient| = {difference:E2}");

        // The loss and tokens it reports are those of the synchronous share, whose gradient is a different one.
        model.zero_grad();
        var (share, tokens) = StudentTrainer.ObjectiveShare(model, batch, 0.6, 0, rank);
        Assert.Equal((share, tokens), (local, localTokens));
        Assert.True(DataParallelTrainingTests.MaxDifference(plain, Gradients()) > 1e-4);
    }

    [Fact]
    public void Distill_train_with_sync_every_on_two_ranks_ends_where_two_DiLoCo_ranks_in_this_process_do()
    {
        using var scratch = new ScratchFolder();
        var folder = StudentTrainingTests.SmallSet(scratch);
        var cli = CliRun.Run(["distill", "train", "--data", folder, "--setting", "cot", "--student", "micro", "--steps", "20", "--eval-interval", "8", "--batch-size", "8",
            "--threads", "1", "--tokenizer-vocab", "320", "--data-parallel", "2", "--sync-every", "4", "--outer-lr", "0.5", "--out", scratch.Combine("cli"),
            "--store", scratch.Combine("store"), "--lease-seconds", "6"]);
        Assert.True(cli.Code == 0, cli.Error);
        var metrics = JsonSerializer.Deserialize<StudentMetrics>(File.ReadAllText(scratch.Combine("cli/metrics.json")))!;
        Assert.Equal((4, 0.5), (metrics.Options.SyncEvery, metrics.Options.OuterLearningRate));

        var corpus = StudentCorpus.Load(folder);
        var checkpoints = new List<int>();
        var local = Ranks(2, 2, corpus, metrics.Options, scratch.Combine("local"), checkpoints);
        static string Json(StudentMetrics m) => JsonSerializer.Serialize(m with { TrainTokensPerSecond = 0 });
        Assert.Equal(Json(local.Metrics), Json(metrics));
        Assert.Equal(local.Predictions.Select(p => p.Output), File.ReadAllLines(scratch.Combine("cli/predictions.jsonl")).Select(l => JsonSerializer.Deserialize<StudentPrediction>(l)!.Output));
        // Evaluations (checkpoints) fall on synchronisations: the first at or after every 8 steps, and the last step.
        Assert.Equal([8, 16, 20], checkpoints);

        // Not the synchronous training: the replicas drifted apart between synchronisations.
        var synchronous = scratch.Combine("synchronous");
        Ranks(2, 2, corpus, metrics.Options with { SyncEvery = 1 }, synchronous, []);
        var stage = StudentTrainer.DistillationFolder;
        var apart = DataParallelTrainingTests.MaxDifference(Weights(Path.Combine(synchronous, "rank0", stage)), Weights(Path.Combine(scratch.Combine("local"), "rank0", stage)));
        output.WriteLine($"max |Δw| against the synchronous run: {apart:E2}");
        Assert.True(apart > 1e-3, $"DiLoCo ended within {apart:E2} of the synchronous weights");
    }
}
