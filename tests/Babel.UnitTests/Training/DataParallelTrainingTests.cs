using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

/// <summary>
/// Data-parallel training checked against its independent computation, the one-rank run: with the same seed and global
/// batch, N ranks (threads of this process, summing through <see cref="InProcessGradientExchange"/>) end with the weights
/// and losses of one rank.
/// </summary>
public class DataParallelTrainingTests
{
    private static readonly PretrainingOptions _options = new()
    {
        Steps = 50, BatchSize = 8, SequenceLength = 32, LearningRate = 3e-3, CheckpointInterval = 1000, Threads = 1, Seed = 11,
    };

    private static TokenStream PatternedStream()
    {
        var random = new Random(3);
        return new TokenStream([.. Enumerable.Range(0, 6000).Select(i => (long)(i % 7 == 0 ? random.Next(3, 200) : 3 + i % 13))]);
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

    private static (IReadOnlyList<double> Losses, Dictionary<string, float[]> Weights) OneRank(Func<int, (Tensor, Tensor)> batches, string directory)
    {
        using var model = TinyPreset();
        var losses = Pretrainer.Train(model, batches, _options, directory);
        return (losses, Weights(model));
    }

    private static List<(IReadOnlyList<double> Losses, Dictionary<string, float[]> Weights)> Ranks(int ranks, int microBatchRows,
        Func<int, (Tensor, Tensor)> batches, string directory)
    {
        var exchange = new InProcessGradientExchange(ranks);
        var results = new (IReadOnlyList<double>, Dictionary<string, float[]>)[ranks];
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            using var model = TinyPreset();
            var rank = new DataParallelRank(r, ranks, microBatchRows, exchange.ForRank(r));
            var losses = Pretrainer.Train(model, batches, _options, Path.Combine(directory, $"rank{r}"), rank, new CheckpointHooks());
            results[r] = (losses, Weights(model));
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return [.. results];
    }

    private static Dictionary<string, float[]> Weights(CausalLanguageModel model) =>
        model.StateDict().ToDictionary(p => p.Key, p => p.Value.to(float32).data<float>().ToArray(), StringComparer.Ordinal);

    private static double MaxDifference(Dictionary<string, float[]> a, Dictionary<string, float[]> b)
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
        var stream = PatternedStream();
        using var scratch = new ScratchFolder();
        var (losses, weights) = OneRank(step => Pretrainer.Batch(stream, _options, step), scratch.Combine("one"));
        var ranks = Ranks(2, DataParallelRank.RowsPerRank(_options.BatchSize, 2), step => Pretrainer.Batch(stream, _options, step), scratch.Combine("two"));

        // Training moved the weights far more than the tolerance, so agreement is not trivial.
        Assert.True(MaxChange(weights) > 0.05, $"training changed the weights by at most {MaxChange(weights)}");
        Assert.True(losses[^1] < losses[0] - 1, $"loss went from {losses[0]:F3} to {losses[^1]:F3}");
        foreach (var (rankLosses, rankWeights) in ranks)
        {
            var difference = MaxDifference(weights, rankWeights);
            Assert.True(difference <= 1e-4, $"max |Δw| = {difference:E2} between one rank and a rank of two");
            Assert.Equal(losses.Count, rankLosses.Count);
            for (var i = 0; i < losses.Count; i++) Assert.True(Math.Abs(losses[i] - rankLosses[i]) <= 1e-4, $"step {i + 1}: loss {losses[i]} vs {rankLosses[i]}");
        }
        // Every replica holds the same bits: the same sum, clipped and stepped the same way.
        Assert.Equal(0, MaxDifference(ranks[0].Weights, ranks[1].Weights));
    }

    [Fact]
    public void Three_ranks_on_uneven_rows_with_ignored_targets_and_one_rank_of_micro_batches_match_one_rank()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = PatternedStream();
        using var scratch = new ScratchFolder();
        Func<int, (Tensor, Tensor)> batches = step => MaskedBatch(stream, step);
        var (losses, weights) = OneRank(batches, scratch.Combine("one"));
        // 8 rows on 3 ranks: blocks of 2, 3 and 3 rows, each weighted by the global count of its unmasked targets.
        var three = Ranks(3, DataParallelRank.RowsPerRank(_options.BatchSize, 3), batches, scratch.Combine("three"));
        // What a group of 3 that lost two ranks runs: one rank, all 8 rows, in micro-batches of 3 rows accumulated.
        var accumulated = Ranks(1, DataParallelRank.RowsPerRank(_options.BatchSize, 3), batches, scratch.Combine("accumulated"));
        foreach (var (rankLosses, rankWeights) in three.Append(accumulated[0]))
        {
            var difference = MaxDifference(weights, rankWeights);
            Assert.True(difference <= 1e-4, $"max |Δw| = {difference:E2}");
            Assert.True(Math.Abs(losses[^1] - rankLosses[^1]) <= 1e-4, $"final loss {losses[^1]} vs {rankLosses[^1]}");
        }
        // Masking matters: a mean per rank instead of the global token weighting would not match (the control).
        Assert.True(MaxChange(weights) > 0.05);
    }

    [Fact]
    public void Rows_split_a_global_batch_into_contiguous_blocks_in_rank_order()
    {
        var exchange = new InProcessGradientExchange(3).ForRank(0);
        var blocks = Enumerable.Range(0, 3).Select(r => new DataParallelRank(r, 3, 3, exchange).Rows(8)).ToList();
        Assert.Equal([(0, 2), (2, 3), (5, 3)], blocks);
        Assert.Equal(3, DataParallelRank.RowsPerRank(8, 3));
        Assert.Equal((0, 16), new DataParallelRank(0, 1, 8, exchange).Rows(16));
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
