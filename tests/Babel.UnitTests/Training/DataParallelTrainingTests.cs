using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Checkpoints;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

/// <summary>
/// Data-parallel training checked against its independent computation, the one-rank run of the same global batch: N
/// ranks (threads of this process, summing through <see cref="InProcessGradientExchange"/>) end with the weights and
/// losses of one rank that accumulates the same micro-batches.
/// </summary>
[Collection(TorchThreadsCollection.Name)]
public class DataParallelTrainingTests(ITestOutputHelper output)
{
    private static readonly PretrainingOptions _options = new()
    {
        Steps = 50, BatchSize = 16, SequenceLength = 64, CheckpointInterval = 1000, Threads = 1, Seed = 11,
    };

    /// <summary>Real English text (GSM8K's test questions) as byte tokens.</summary>
    internal static TokenStream Text()
    {
        var shared = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(CheckpointTestFiles.Stories260K)))!;
        var bytes = File.ReadAllBytes(Path.Combine(shared, "data", "gsm8k", "test.jsonl"));
        return new TokenStream([.. bytes.Take(200_000).Select(b => (long)b)]);
    }

    private static CausalLanguageModel TinyPreset()
    {
        var model = new CausalLanguageModel(ModelPresets.Create("tiny", vocabSize: 256, bosId: 1, eosId: 2, padId: 0));
        model.InitializeWeights(_options.Seed);
        return model;
    }

    /// <summary>Batches whose targets leave out a different number of tokens in every row, as prompts and padding do.</summary>
    private static (Tensor Inputs, Tensor Targets) MaskedBatch(TokenStream stream, int step)
    {
        var (inputs, targets) = Pretrainer.Batch(stream, _options, step);
        var masked = targets.clone();
        for (var row = 0; row < _options.BatchSize; row++)
        {
            var prompt = (row * 7 + step * 3) % (_options.SequenceLength - 1);
            if (prompt > 0) masked[row].narrow(0, 0, prompt).fill_(Pretrainer.IgnoreIndex);
        }
        return (inputs, masked);
    }

    private sealed record Run(IReadOnlyList<double> Losses, Dictionary<string, float[]> Weights);

    private static Run OnePass(Func<int, (Tensor, Tensor)> batches, string directory)
    {
        using var model = TinyPreset();
        var losses = Pretrainer.Train(model, batches, _options, directory);
        return new Run(losses, Weights(model));
    }

    /// <summary><paramref name="ranks"/> ranks on threads of this process, the global batch cut into <paramref name="microBatches"/>.</summary>
    private static List<Run> Ranks(int ranks, int microBatches, Func<int, (Tensor, Tensor)> batches, string directory)
    {
        var exchange = new InProcessGradientExchange(ranks);
        var results = new Run[ranks];
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            using var model = TinyPreset();
            var rank = new DataParallelRank(r, ranks, microBatches, exchange.ForRank(r));
            var losses = Pretrainer.Train(model, batches, _options, Path.Combine(directory, $"rank{r}"), rank, new CheckpointHooks());
            results[r] = new Run(losses, Weights(model));
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return [.. results];
    }

    internal static Dictionary<string, float[]> Weights(CausalLanguageModel model) =>
        model.StateDict().ToDictionary(p => p.Key, p => p.Value.to(float32).data<float>().ToArray(), StringComparer.Ordinal);

    internal static double MaxDifference(Dictionary<string, float[]> a, Dictionary<string, float[]> b)
    {
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        return a.Max(p => p.Value.Zip(b[p.Key], (x, y) => Math.Abs(x - y)).Max());
    }

    private static double MaxChange(Dictionary<string, float[]> trained)
    {
        using var initial = TinyPreset();
        return MaxDifference(trained, Weights(initial));
    }

    [Fact]
    public void Two_ranks_end_with_the_weights_of_one_rank_after_50_steps_of_the_tiny_preset()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = Text();
        using var scratch = new ScratchFolder();
        Func<int, (Tensor, Tensor)> batches = step => Pretrainer.Batch(stream, _options, step);
        var one = Ranks(1, 2, batches, scratch.Combine("one"))[0];
        var two = Ranks(2, 2, batches, scratch.Combine("two"));

        // Training moved the weights far more than the tolerance, so agreement is not trivial.
        Assert.True(MaxChange(one.Weights) > 0.05, $"training changed the weights by at most {MaxChange(one.Weights)}");
        Assert.True(one.Losses[^1] < one.Losses[0] - 1, $"loss went from {one.Losses[0]:F3} to {one.Losses[^1]:F3}");
        foreach (var rank in two)
        {
            var difference = MaxDifference(one.Weights, rank.Weights);
            Assert.True(difference <= 1e-4, $"max |Δw| = {difference:E2} between one rank and a rank of two");
            // The sum in rank order of two blocks is the autograd accumulation of the same two blocks: the same bits.
            Assert.Equal(0, difference);
            Assert.Equal(one.Losses, rank.Losses);
        }

        // Against one forward of all 16 rows (a different float summation, amplified by 50 steps of AdamW): the same
        // training, not the same bits. The difference is measured, and the losses agree closely.
        var onePass = OnePass(batches, scratch.Combine("one-pass"));
        output.WriteLine($"max |Δw| against one forward of the whole batch: {MaxDifference(onePass.Weights, one.Weights):E2}; " +
            $"final loss {onePass.Losses[^1]:F5} vs {one.Losses[^1]:F5}");
        Assert.Equal(onePass.Losses[0], one.Losses[0], 5);
        Assert.True(Math.Abs(onePass.Losses[^1] - one.Losses[^1]) < 0.02, $"final loss {onePass.Losses[^1]} vs {one.Losses[^1]}");
    }

    [Fact]
    public void Ranks_on_uneven_rows_with_ignored_targets_match_one_rank_and_a_shrunken_group_keeps_the_global_batch()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = Text();
        using var scratch = new ScratchFolder();
        Func<int, (Tensor, Tensor)> batches = step => MaskedBatch(stream, step);
        // 16 rows in 3 blocks of 5, 5 and 6 rows, each weighted by the global count of unmasked targets.
        var one = Ranks(1, 3, batches, scratch.Combine("one"))[0];
        var three = Ranks(3, 3, batches, scratch.Combine("three"));
        Assert.True(MaxChange(one.Weights) > 0.05);
        foreach (var rank in three) Assert.Equal(0, MaxDifference(one.Weights, rank.Weights));

        // A run of 4 blocks that lost a rank: 3 ranks take 1, 1 and 2 blocks. ((g0 + g1) + (g2 + g3)) is not
        // (((g0 + g1) + g2) + g3) bit for bit, but within float tolerance.
        var fourBlocks = Ranks(1, 4, batches, scratch.Combine("four-one"))[0];
        var shrunk = Ranks(3, 4, batches, scratch.Combine("four-three"));
        foreach (var rank in shrunk)
        {
            var difference = MaxDifference(fourBlocks.Weights, rank.Weights);
            output.WriteLine($"4 blocks on 3 ranks against 1 rank: max |Δw| = {difference:E2}");
            Assert.True(difference <= 1e-4, $"max |Δw| = {difference:E2}");
        }
    }

    [Fact]
    public void Micro_batches_split_a_global_batch_into_contiguous_blocks_and_ranks_take_contiguous_runs_of_them()
    {
        var exchange = new InProcessGradientExchange(3).ForRank(0);
        Assert.Equal([(0, 5), (5, 5), (10, 6)], Enumerable.Range(0, 3).Select(b => new DataParallelRank(0, 3, 3, exchange).RowsOf(b, 16)));
        // 4 blocks on 3 ranks (one lost): 1, 1 and 2 blocks.
        Assert.Equal([(0, 1), (1, 1), (2, 2)], Enumerable.Range(0, 3).Select(r => new DataParallelRank(r, 3, 4, exchange).Blocks));
        Assert.Equal((0, 2), new DataParallelRank(0, 1, 2, exchange).Blocks);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataParallelRank(0, 3, 2, exchange).Validate());
    }

    [Fact]
    public void The_rank_ordered_sum_does_not_depend_on_arrival_and_adds_in_rank_order()
    {
        // 1e8 + 1 - 1e8 in float32 is 0 added left to right, 1 otherwise: the order is observable.
        float[] a = [1e8f, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        float[] b = [1f, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        float[] c = [-1e8f, 0, 0, 0, 0, 0, 0, 0, 0, 0.5f];
        var sum = new float[10];
        RankOrderedSum.Sum([a, b, c], sum);
        Assert.Equal([0f, 2, 3, 4, 5, 6, 7, 8, 9, 10.5f], sum);
        var exchange = new InProcessGradientExchange(3);
        var results = new float[3][];
        var threads = new[] { a, b, c }.Select((values, rank) => new Thread(() =>
        {
            // Later ranks arrive first.
            Thread.Sleep((2 - rank) * 30);
            var copy = (float[])values.Clone();
            exchange.ForRank(rank).SumInPlace(0, copy, CancellationToken.None);
            results[rank] = copy;
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.All(results, r => Assert.Equal(sum, r));
    }
}

/// <summary>
/// Tests that train on several threads of the test process at once run alone: TorchSharp 0.107 has crashed twice here
/// with a freed Scalar in a native call ("Unknown scalar type") while other test classes allocated heavily beside them.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TorchThreadsCollection
{
    public const string Name = "torch threads";
}
