using System.Diagnostics;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

public class MoEficationTests
{
    public static TheoryData<string, int> MethodsAndExperts => new()
    {
        { MoEfication.BalancedKMeans, 1 },
        { MoEfication.BalancedKMeans, 4 },
        { MoEfication.BalancedKMeans, 12 },
        { MoEfication.BalancedKMeans, 48 },
        { MoEfication.Random, 1 },
        { MoEfication.Random, 6 },
        { MoEfication.Random, 16 },
    };

    [Theory]
    [MemberData(nameof(MethodsAndExperts))]
    public void Every_expert_gets_exactly_n_over_E_neurons_and_every_neuron_one_expert(string method, int experts)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, experts, method, seed: 3);
        Assert.Equal(model.Config.NumHiddenLayers, partition.Layers);
        Assert.Equal(method, partition.Method);
        foreach (var layer in partition.ExpertOfNeuron)
        {
            Assert.Equal(48, layer.Length);
            var sizes = layer.GroupBy(e => e).ToDictionary(g => g.Key, g => g.Count());
            Assert.Equal(Enumerable.Range(0, experts), sizes.Keys.Order());
            Assert.All(sizes.Values, size => Assert.Equal(48 / experts, size));
        }
        partition.Validate("test").CheckFits(model.Config, "test");
    }

    [Theory]
    [InlineData(MoEfication.BalancedKMeans)]
    [InlineData(MoEfication.Random)]
    public void The_same_seed_gives_the_same_partition_and_another_seed_another(string method)
    {
        TorchRuntime.Initialize();
        using var rows = PlantedRows([12, 12, 12, 12], features: 32, noise: 0.6, seed: 5).Rows;
        var first = MoEfication.PartitionLayer(rows, 4, method, seed: 1);
        var again = MoEfication.PartitionLayer(rows, 4, method, seed: 1);
        Assert.Equal(first, again);
        if (method == MoEfication.Random)
        {
            Assert.NotEqual(first, MoEfication.PartitionLayer(rows, 4, method, seed: 2));
        }
    }

    [Fact]
    public void Layers_get_different_random_splits_and_each_layer_can_be_partitioned_alone()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, 4, MoEfication.Random, seed: 9);
        Assert.NotEqual(partition.ExpertOfNeuron[0], partition.ExpertOfNeuron[1]);
        using var rows = MoEfication.LayerRows(model, 1);
        Assert.Equal(partition.ExpertOfNeuron[1], MoEfication.PartitionLayer(rows, 4, MoEfication.Random, MoEfication.LayerSeed(9, 1)));
        var kmeans = MoEfication.Partition(model, 4, MoEfication.BalancedKMeans, seed: 9);
        Assert.Equal(kmeans.ExpertOfNeuron[1], MoEfication.PartitionLayer(rows, 4, MoEfication.BalancedKMeans, MoEfication.LayerSeed(9, 1)));
    }

    [Fact]
    public void Balanced_kmeans_recovers_planted_equal_clusters_and_beats_random()
    {
        TorchRuntime.Initialize();
        var (rows, labels) = PlantedRows([24, 24, 24, 24, 24, 24, 24, 24], features: 64, noise: 0.08, seed: 11);
        using (rows)
        {
            var found = MoEfication.PartitionLayer(rows, 8, MoEfication.BalancedKMeans, seed: 0);
            var random = MoEfication.PartitionLayer(rows, 8, MoEfication.Random, seed: 0);
            Assert.True(AdjustedRandIndex(labels, found) > 0.9, $"adjusted Rand index {AdjustedRandIndex(labels, found):F3}");
            Assert.True(AdjustedRandIndex(labels, random) < 0.2);
            Assert.True(MoEfication.MeanWithinExpertSimilarity(rows, found, 8) > MoEfication.MeanWithinExpertSimilarity(rows, random, 8) + 0.5);
        }
    }

    [Fact]
    public void Balanced_kmeans_stays_balanced_when_the_planted_clusters_are_unequal()
    {
        TorchRuntime.Initialize();
        int[] sizes = [24, 12, 8, 4];
        var (rows, labels) = PlantedRows(sizes, features: 64, noise: 0.08, seed: 12);
        using (rows)
        {
            var found = MoEfication.PartitionLayer(rows, 4, MoEfication.BalancedKMeans, seed: 0);
            Assert.All(found.GroupBy(e => e), g => Assert.Equal(12, g.Count()));
            var random = MoEfication.PartitionLayer(rows, 4, MoEfication.Random, seed: 0);
            Assert.True(MoEfication.MeanWithinExpertSimilarity(rows, found, 4) > MoEfication.MeanWithinExpertSimilarity(rows, random, 4));
            // The optimum: the big cluster fills two experts, the 12 one, the 8 and the 4 share the last; no small cluster is split.
            for (var cluster = 1; cluster < sizes.Length; cluster++)
            {
                Assert.Single(Enumerable.Range(0, labels.Length).Where(n => labels[n] == cluster).Select(n => found[n]).Distinct());
            }
        }
    }

    [Fact]
    public void Partition_recovers_clusters_planted_in_the_gate_and_up_weights_of_a_model()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var planted = new int[model.Config.NumHiddenLayers][];
        using (no_grad())
        {
            for (var layer = 0; layer < planted.Length; layer++)
            {
                var hidden = model.Config.HiddenSize;
                var (rows, labels) = PlantedRows([12, 12, 12, 12], features: 2 * hidden, noise: 0.05, seed: 20 + layer);
                using (rows)
                {
                    // Scales per neuron do not matter: the rows are normalised before clustering.
                    using var scaled = rows * (rand(rows.shape[0], 1) + 0.5);
                    model.Layers[layer].Mlp.GateProj.weight!.copy_(scaled.narrow(1, 0, hidden));
                    model.Layers[layer].Mlp.UpProj.weight!.copy_(scaled.narrow(1, hidden, hidden));
                }
                planted[layer] = labels;
            }
        }
        var reports = new List<int>();
        var partition = MoEfication.Partition(model, 4, MoEfication.BalancedKMeans, seed: 1, new SynchronousProgress(reports.Add));
        Assert.Equal([1, 2], reports);
        for (var layer = 0; layer < planted.Length; layer++)
        {
            Assert.Equal(1.0, AdjustedRandIndex(planted[layer], partition.ExpertOfNeuron[layer]), 6);
        }
    }

    [Fact]
    public void Within_expert_similarity_is_one_for_identical_rows_and_about_zero_for_orthogonal_ones()
    {
        TorchRuntime.Initialize();
        using var identical = ones(8, 4);
        Assert.Equal(1.0, MoEfication.MeanWithinExpertSimilarity(identical, [0, 0, 0, 0, 1, 1, 1, 1], 2), 9);
        using var orthogonal = eye(8);
        Assert.Equal(0.0, MoEfication.MeanWithinExpertSimilarity(orthogonal, [0, 0, 0, 0, 1, 1, 1, 1], 2), 9);
    }

    [Fact]
    public void Experts_that_do_not_divide_the_layer_are_a_user_error()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var error = Assert.Throws<UserInputException>(() => MoEfication.Partition(model, 5, MoEfication.BalancedKMeans, 0));
        Assert.Contains("48", error.Message, StringComparison.Ordinal);
        Assert.Throws<UserInputException>(() => MoEfication.Partition(model, 0, MoEfication.Random, 0));
    }

    [Fact]
    public void An_unknown_method_is_a_user_error_listing_the_methods()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var unknown = Assert.Throws<UserInputException>(() => MoEfication.Partition(model, 4, "spectral", 0));
        Assert.Contains("balanced-kmeans", unknown.Message, StringComparison.Ordinal);
        Assert.Contains("random", unknown.Message, StringComparison.Ordinal);
        var notYet = Assert.Throws<UserInputException>(() => MoEfication.Partition(model, 4, MoEfication.Cooccurrence, 0));
        Assert.Contains("not implemented", notYet.Message, StringComparison.Ordinal);
        Assert.Contains("balanced-kmeans", notYet.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_partition_made_for_another_model_is_refused()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var other = MoEfication.Partition(model, 4, MoEfication.Random, 0);
        var deeper = model.Config with { NumHiddenLayers = 3 };
        var wider = model.Config with { IntermediateSize = 96 };
        Assert.Contains("babel moefy", Assert.Throws<UserInputException>(() => other.CheckFits(deeper, "experts.json")).Message, StringComparison.Ordinal);
        Assert.Throws<UserInputException>(() => other.CheckFits(wider, "experts.json"));
    }

    [Fact]
    public void A_model_of_d128_ffn384_and_4_layers_is_partitioned_into_16_experts_in_seconds()
    {
        var config = TinyModels.Config() with { HiddenSize = 128, IntermediateSize = 384, NumHiddenLayers = 4, HeadDim = 32 };
        using var model = TinyModels.Create(config);
        var clock = Stopwatch.StartNew();
        var partition = MoEfication.Partition(model, 16, MoEfication.BalancedKMeans, seed: 0);
        var elapsed = clock.Elapsed;
        partition.CheckFits(config, "test");
        Assert.True(elapsed < TimeSpan.FromSeconds(30), $"took {elapsed}");
        for (var layer = 0; layer < 4; layer++)
        {
            using var rows = MoEfication.LayerRows(model, layer);
            var random = MoEfication.PartitionLayer(rows, 16, MoEfication.Random, 0);
            Assert.True(MoEfication.MeanWithinExpertSimilarity(rows, partition.ExpertOfNeuron[layer], 16) > MoEfication.MeanWithinExpertSimilarity(rows, random, 16));
        }
    }

    /// <summary>Rows around one random unit centre per cluster (cluster sizes as given), shuffled; with each row's cluster.</summary>
    internal static (Tensor Rows, int[] Labels) PlantedRows(int[] sizes, int features, double noise, long seed)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        var centres = randn(sizes.Length, features, generator: generator);
        centres = centres / centres.norm(1, keepdim: true);
        var random = new Random((int)seed);
        var labels = sizes.SelectMany((size, cluster) => Enumerable.Repeat(cluster, size)).OrderBy(_ => random.Next()).ToArray();
        var rows = centres.index_select(0, tensor(labels.Select(l => (long)l).ToArray()))
            + noise / Math.Sqrt(features) * randn(labels.Length, features, generator: generator);
        return (rows.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>Hubert and Arabie's adjusted Rand index: 1 for the same clustering up to renaming, about 0 for chance.</summary>
    internal static double AdjustedRandIndex(int[] truth, int[] found)
    {
        static double Pairs(long count) => count * (count - 1) / 2.0;
        var table = truth.Zip(found).GroupBy(p => p).Select(g => Pairs(g.Count())).Sum();
        var rows = truth.GroupBy(t => t).Select(g => Pairs(g.Count())).Sum();
        var columns = found.GroupBy(f => f).Select(g => Pairs(g.Count())).Sum();
        var expected = rows * columns / Pairs(truth.Length);
        var maximum = (rows + columns) / 2;
        return maximum == expected ? 1.0 : (table - expected) / (maximum - expected);
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool; tests need the reports in order, at once.</summary>
    private sealed class SynchronousProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
