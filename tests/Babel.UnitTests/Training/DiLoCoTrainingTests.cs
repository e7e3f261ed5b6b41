using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.UnitTests.Training;

/// <summary>
/// DiLoCo mode (<c>--sync-every H</c>) of data-parallel training against independent computations: a plain loop of N
/// AdamW replicas with the outer Nesterov step written out in the test; the one-rank run with outer learning rate 1 and
/// no momentum against the synchronous mode; the number of exchanges; and a run stopped and resumed from its checkpoint.
/// </summary>
[Collection(TorchThreadsCollection.Name)]
public class DiLoCoTrainingTests(ITestOutputHelper output)
{
    private static readonly PretrainingOptions _options = new()
    {
        Steps = 12, BatchSize = 8, SequenceLength = 32, CheckpointInterval = 1000, Threads = 1, Seed = 5, SyncEvery = 4,
    };

    private static CausalLanguageModel TinyPreset()
    {
        var model = new CausalLanguageModel(ModelPresets.Create("tiny", vocabSize: 256, bosId: 1, eosId: 2, padId: 0));
        model.InitializeWeights(_options.Seed);
        return model;
    }

    private sealed record Run(IReadOnlyList<double> Losses, Dictionary<string, float[]> Weights);

    /// <summary>A data-parallel run of <paramref name="ranks"/> threads; every exchange each rank makes is counted.</summary>
    private static (List<Run> Runs, int[] Exchanges) Ranks(int ranks, int microBatches, PretrainingOptions options, Func<int, (Tensor, Tensor)> batches, string directory,
        CancellationToken cancellationToken = default, Action<int>? leaderProgress = null)
    {
        var exchange = new InProcessGradientExchange(ranks);
        var results = new Run[ranks];
        var exchanges = new int[ranks];
        var failures = new Exception?[ranks];
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try
            {
                using var model = TinyPreset();
                var rank = new DataParallelRank(r, ranks, microBatches, new CountingExchange(exchange.ForRank(r), () => exchanges[r]++));
                var progress = r == 0 && leaderProgress is not null ? new SynchronousProgress(p => leaderProgress(p.Step)) : null;
                var losses = Pretrainer.Train(model, batches, options, Path.Combine(directory, $"rank{r}"), rank, new CheckpointHooks(), progress, cancellationToken);
                results[r] = new Run(losses, DataParallelTrainingTests.Weights(model));
            }
            catch (Exception e)
            {
                failures[r] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (failures.FirstOrDefault(f => f is not null) is { } failure) throw failure;
        return ([.. results], exchanges);
    }

    private sealed class CountingExchange(IGradientExchange inner, Action counted) : IGradientExchange
    {
        public void Start(int step, float[] values, int start, int count) => inner.Start(step, values, start, count);

        public void Finish(int step, float[] values, CancellationToken cancellationToken)
        {
            counted();
            inner.Finish(step, values, cancellationToken);
        }
    }

    private sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    /// <summary>
    /// DiLoCo written out: <paramref name="replicas"/> models, each with its own AdamW (Babel's parameter groups, schedule and
    /// clipping), each stepping on its quarter … of every global batch with the mean loss of its rows; every H steps
    /// Δ = θ − mean(θ_r), b ← μb + Δ, θ ← θ − η(Δ + μb), and every replica starts again from θ.
    /// </summary>
    private static Run Reference(int replicas, PretrainingOptions options, Func<int, (Tensor Inputs, Tensor Targets)> batches)
    {
        var models = Enumerable.Range(0, replicas).Select(_ => TinyPreset()).ToList();
        var optimizers = models.Select(m =>
        {
            m.train();
            var named = m.named_parameters().ToList();
            var decayed = named.Where(p => p.parameter.dim() >= 2 && p.name != "model.embed_tokens.weight").Select(p => p.parameter).ToList();
            var undecayed = named.Select(p => p.parameter).Except(decayed).ToList();
            return optim.AdamW(
                [
                    new TorchSharp.Modules.AdamW.ParamGroup(decayed, new TorchSharp.Modules.AdamW.Options { weight_decay = options.WeightDecay }),
                    new TorchSharp.Modules.AdamW.ParamGroup(undecayed, new TorchSharp.Modules.AdamW.Options { weight_decay = 0 }),
                ],
                lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2, weight_decay: options.WeightDecay);
        }).ToList();
        var global = Flat(models[0]);
        var momentum = new double[global.Length];
        var losses = new List<double>();
        for (var step = 0; step < options.Steps; step++)
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = batches(step);
            double loss = 0;
            for (var r = 0; r < replicas; r++)
            {
                var rows = options.BatchSize / replicas;
                var logits = models[r].Forward(inputs.narrow(0, r * rows, rows));
                var summed = F.cross_entropy(logits.view(-1, logits.shape[^1]), targets.narrow(0, r * rows, rows).reshape(-1), reduction: nn.Reduction.Sum);
                foreach (var group in optimizers[r].ParamGroups) group.LearningRate = options.LearningRateAt(step);
                optimizers[r].zero_grad();
                (summed / (rows * options.SequenceLength)).backward();
                nn.utils.clip_grad_norm_(models[r].parameters(), options.GradientClip);
                optimizers[r].step();
                loss += summed.item<float>() / (options.BatchSize * options.SequenceLength);
            }
            losses.Add(loss);
            if ((step + 1) % options.SyncEvery != 0 && step + 1 != options.Steps) continue;
            var locals = models.Select(Flat).ToList();
            for (var i = 0; i < global.Length; i++)
            {
                var mean = locals.Sum(l => (double)l[i]) / replicas;
                var outerGradient = global[i] - mean;
                momentum[i] = options.OuterMomentum * momentum[i] + outerGradient;
                global[i] = (float)(global[i] - options.OuterLearningRate * (outerGradient + options.OuterMomentum * momentum[i]));
            }
            foreach (var model in models) Set(model, global);
        }
        var run = new Run(losses, DataParallelTrainingTests.Weights(models[0]));
        optimizers.ForEach(o => o.Dispose());
        models.ForEach(m => m.Dispose());
        return run;
    }

    private static float[] Flat(CausalLanguageModel model) => [.. model.parameters().SelectMany(p => p.detach().contiguous().view(-1).data<float>().ToArray())];

    private static void Set(CausalLanguageModel model, float[] values)
    {
        using var noGrad = no_grad();
        var offset = 0;
        foreach (var parameter in model.parameters())
        {
            var count = (int)parameter.numel();
            parameter.copy_(tensor(values.AsSpan(offset, count).ToArray()).view(parameter.shape));
            offset += count;
        }
    }

    private static Func<int, (Tensor, Tensor)> Batches(PretrainingOptions options)
    {
        var stream = DataParallelTrainingTests.Text();
        return step => Pretrainer.Batch(stream, options, step);
    }

    [Fact]
    public void Two_ranks_match_a_plain_loop_of_two_AdamW_replicas_and_the_outer_Nesterov_step()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var scratch = new ScratchFolder();
        // 12 steps of H = 5: two full rounds and a short last one.
        var options = _options with { SyncEvery = 5 };
        var batches = Batches(options);
        var (runs, _) = Ranks(2, 2, options, batches, scratch.Combine("diloco"));
        var reference = Reference(2, options, batches);
        foreach (var run in runs)
        {
            var difference = DataParallelTrainingTests.MaxDifference(reference.Weights, run.Weights);
            output.WriteLine($"max |Δw| against the plain loop: {difference:E2}");
            Assert.True(difference <= 1e-5, $"max |Δw| = {difference:E2} against the plain loop");
            for (var step = 0; step < options.Steps; step++) Assert.Equal(reference.Losses[step], run.Losses[step], 4);
        }
        Assert.Equal(runs[0].Weights.Keys, runs[1].Weights.Keys);
        Assert.Equal(0, DataParallelTrainingTests.MaxDifference(runs[0].Weights, runs[1].Weights));

        // Not the synchronous training: the replicas drifted apart between synchronisations, and the outer step is not AdamW's.
        var (synchronous, _) = Ranks(2, 2, options with { SyncEvery = 1 }, batches, scratch.Combine("synchronous"));
        var apart = DataParallelTrainingTests.MaxDifference(synchronous[0].Weights, runs[0].Weights);
        output.WriteLine($"max |Δw| against the synchronous run: {apart:E2}");
        Assert.True(apart > 1e-3, $"DiLoCo ended within {apart:E2} of the synchronous weights");
    }

    [Fact]
    public void One_rank_with_outer_learning_rate_1_and_no_momentum_takes_the_synchronous_steps_to_the_bit()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var scratch = new ScratchFolder();
        var batches = Batches(_options);
        var (synchronous, _) = Ranks(1, 2, _options with { SyncEvery = 1 }, batches, scratch.Combine("synchronous"));
        var (local, _) = Ranks(1, 2, _options with { OuterLearningRate = 1, OuterMomentum = 0 }, batches, scratch.Combine("local"));
        Assert.Equal(0, DataParallelTrainingTests.MaxDifference(synchronous[0].Weights, local[0].Weights));
        Assert.Equal(synchronous[0].Losses, local[0].Losses);
        Assert.True(synchronous[0].Losses[^1] < synchronous[0].Losses[0] - 0.5, "the run did not train");
        // The paper's outer step on the same replica moves it elsewhere: the comparison above can fail.
        var (outer, _) = Ranks(1, 2, _options, batches, scratch.Combine("outer"));
        Assert.True(DataParallelTrainingTests.MaxDifference(synchronous[0].Weights, outer[0].Weights) > 1e-3);
    }

    [Fact]
    public void Ranks_exchange_once_per_H_steps_and_after_the_last()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var scratch = new ScratchFolder();
        var options = _options with { Steps = 10, SyncEvery = 4, CheckpointInterval = 6 };
        var (_, local) = Ranks(2, 2, options, Batches(options), scratch.Combine("local"));
        Assert.Equal([3, 3], local);
        var (_, synchronous) = Ranks(2, 2, options with { SyncEvery = 1 }, Batches(options), scratch.Combine("synchronous"));
        Assert.Equal([10, 10], synchronous);
        // The checkpoint interval of 6 falls inside the round of steps 5–8: the checkpoint is taken at its synchronisation.
        Assert.Equal([8, 10], options.CheckpointSteps());
        Assert.Equal([3, 6, 9, 10], (options with { SyncEvery = 1, CheckpointInterval = 3 }).CheckpointSteps());
    }

    [Fact]
    public void A_run_stopped_after_a_checkpoint_resumes_to_the_bits_of_an_uninterrupted_run()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var scratch = new ScratchFolder();
        var options = _options with { CheckpointInterval = 4 };
        var batches = Batches(options);
        var (uninterrupted, _) = Ranks(2, 2, options, batches, scratch.Combine("uninterrupted"));

        using var stop = new CancellationTokenSource();
        var directory = scratch.Combine("stopped");
        Assert.ThrowsAny<OperationCanceledException>(() => Ranks(2, 2, options, batches, directory, stop.Token, step =>
        {
            if (step == 4) stop.Cancel();
        }));
        // The leader's checkpoint (weights = θ_global, its AdamW state, the other rank's and the outer momentum) is what every rank restores.
        var checkpoint = Path.Combine(directory, "rank0");
        Assert.True(File.Exists(Path.Combine(checkpoint, DiLoCoSynchronization.MomentumFileName)));
        Assert.True(File.Exists(Path.Combine(checkpoint, Pretrainer.RankOptimizerFileName(1))));
        Assert.Equal(4, (int)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "trainer.json")))!["Step"]!);
        var withoutInnerState = scratch.Combine("without-inner-state");
        foreach (var target in new[] { Path.Combine(directory, "rank1"), Path.Combine(withoutInnerState, "rank0"), Path.Combine(withoutInnerState, "rank1") })
        {
            Directory.CreateDirectory(target);
            foreach (var file in Directory.GetFiles(checkpoint)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        }
        var (resumed, _) = Ranks(2, 2, options, batches, directory);
        foreach (var r in Enumerable.Range(0, 2))
        {
            Assert.Equal(0, DataParallelTrainingTests.MaxDifference(uninterrupted[r].Weights, resumed[r].Weights));
            Assert.Equal(uninterrupted[r].Losses, resumed[r].Losses);
        }

        // Rank 1 resuming with the leader's AdamW moments instead of its own: the run goes on, but not to the same bits.
        File.Delete(Path.Combine(withoutInnerState, "rank1", Pretrainer.RankOptimizerFileName(1)));
        var (approximate, _) = Ranks(2, 2, options, batches, withoutInnerState);
        Assert.True(DataParallelTrainingTests.MaxDifference(uninterrupted[0].Weights, approximate[0].Weights) > 0);
    }
}
