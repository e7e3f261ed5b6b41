using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

public class ExpertPruningTests
{
    private static ActivationProfile Profile(params (string Language, long Tokens, long[][] Counts)[] languages) =>
        new("models/x", languages[0].Counts.Length, languages[0].Counts[0].Length, "topk:1",
            languages.ToDictionary(l => l.Language, l => new LanguageActivations(l.Tokens, l.Counts)));

    private static int[] PrunedIds(bool[] layer) => [.. layer.Select((p, e) => (p, e)).Where(x => x.p).Select(x => x.e)];

    [Fact]
    public void Frequency_prunes_the_least_active_experts_of_each_layer_at_the_exact_rate()
    {
        var frequencies = new[]
        {
            new[] { 0.9, 0.1, 0.5, 0.05, 0.3, 0.2, 0.7, 0.4 },
            new[] { 0.0, 0.8, 0.8, 0.1, 0.6, 0.1, 0.2, 0.9 },
        };
        var pruned = ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Frequency);
        Assert.Equal([1, 3], PrunedIds(pruned[0]));
        // Ties at 0.1 go to the lower expert id, after the 0.0.
        Assert.Equal([0, 3], PrunedIds(pruned[1]));
        Assert.Equal([1, 3, 5], PrunedIds(ExpertPruning.Select(frequencies, 0.375, ExpertPruning.Frequency)[0]));
    }

    [Theory]
    [InlineData(0.1, 16, 2)]
    [InlineData(0.2, 16, 3)]
    [InlineData(0.5, 16, 8)]
    [InlineData(0.25, 8, 2)]
    [InlineData(0.9, 8, 7)]
    public void A_rate_prunes_round_rate_times_experts_per_layer(double rate, int experts, int expected) =>
        Assert.Equal(expected, ExpertPruning.ExpertsPerLayer(rate, experts));

    [Theory]
    [InlineData(0.0, "outside (0, 1)")]
    [InlineData(1.0, "outside (0, 1)")]
    [InlineData(-0.2, "outside (0, 1)")]
    [InlineData(0.01, "prunes 0 of 8")]
    [InlineData(0.97, "prunes 8 of 8")]
    public void A_rate_that_prunes_nothing_or_everything_is_refused(double rate, string expected)
    {
        var error = Assert.Throws<UserInputException>(() => ExpertPruning.ExpertsPerLayer(rate, 8));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_prunes_the_same_number_per_layer_reproducibly_and_depends_on_the_seed()
    {
        var frequencies = Enumerable.Range(0, 6).Select(l => Enumerable.Range(0, 16).Select(e => (double)e).ToArray()).ToArray();
        var first = ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Random, seed: 5);
        Assert.All(first, layer => Assert.Equal(4, layer.Count(p => p)));
        Assert.Equal(first, ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Random, seed: 5));
        Assert.NotEqual(first, ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Random, seed: 6));
        // Layers draw differently, and not simply the least frequent experts 0–3.
        Assert.NotEqual(PrunedIds(first[0]), PrunedIds(first[1]));
        Assert.Contains(first, layer => !PrunedIds(layer).SequenceEqual([0, 1, 2, 3]));
        // Over many seeds every expert gets pruned sometimes: the draw covers all experts.
        var hit = new bool[16];
        for (var seed = 0; seed < 50; seed++)
        {
            foreach (var e in PrunedIds(ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Random, seed)[0])) hit[e] = true;
        }
        Assert.All(hit, Assert.True);
    }

    [Fact]
    public void Layerwise_moves_the_budget_to_layers_whose_activations_are_concentrated()
    {
        // Layer 0 is flat (coefficient of variation 0), layer 1 concentrated: the whole budget of 2 × 2 would go to
        // layer 1, which must keep one expert, so it prunes 3 and layer 0 prunes the remaining 1 (the lowest id on a tie).
        var frequencies = new[] { new[] { 0.25, 0.25, 0.25, 0.25 }, new[] { 0.7, 0.1, 0.1, 0.1 } };
        Assert.Equal([1, 3], ExpertPruning.LayerwiseCounts(frequencies, 4));
        var pruned = ExpertPruning.Select(frequencies, 0.5, ExpertPruning.Layerwise);
        Assert.Equal([0], PrunedIds(pruned[0]));
        Assert.Equal([1, 2, 3], PrunedIds(pruned[1]));
    }

    [Fact]
    public void Concentration_prunes_the_lowest_shares_of_layer_mass_over_the_whole_model()
    {
        // Shares of layer mass: layer 0 flat (0.25 each), layer 1 concentrated (0.5, 0.45, 0.025, 0.025), layer 2 (0.4, 0.3, 0.2, 0.1).
        var frequencies = new[] { new[] { 0.5, 0.5, 0.5, 0.5 }, new[] { 1.0, 0.9, 0.05, 0.05 }, new[] { 0.8, 0.6, 0.4, 0.2 } };
        // Rate 0.25, 3 experts in all: 0.025, 0.025 (layer 1) and 0.1 (layer 2).
        Assert.Equal([0, 2, 1], ExpertPruning.ConcentrationCounts(frequencies, 3));
        // Rate 0.5, 6 in all: then 0.2 (layer 2) and two of the flat layer's 0.25 (the lowest layer and ids first).
        Assert.Equal([2, 2, 2], ExpertPruning.ConcentrationCounts(frequencies, 6));
        var pruned = ExpertPruning.Select(frequencies, 0.25, ExpertPruning.Concentration);
        Assert.Equal([], PrunedIds(pruned[0]));
        Assert.Equal([2, 3], PrunedIds(pruned[1]));
        Assert.Equal([3], PrunedIds(pruned[2]));
        // A layer keeps at least one expert whatever its shares, and a layer without activations counts as all-zero shares.
        Assert.Equal([3, 3], ExpertPruning.ConcentrationCounts([[0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], 6));
    }

    [Fact]
    public void Concentration_counts_equal_a_plain_loop_over_random_profiles()
    {
        var random = new Random(5);
        for (var trial = 0; trial < 20; trial++)
        {
            var frequencies = Enumerable.Range(0, 6).Select(l => Enumerable.Range(0, 8).Select(_ => Math.Round(Math.Pow(random.NextDouble(), 1 + l % 3), 2)).ToArray()).ToArray();
            var total = random.Next(1, 6 * 7 + 1);
            // Plain loop: take the lowest share still allowed, one expert at a time.
            var counts = new int[6];
            var taken = new bool[6, 8];
            for (var step = 0; step < total; step++)
            {
                var (bestLayer, bestExpert, bestShare) = (-1, -1, double.MaxValue);
                for (var l = 0; l < 6; l++)
                {
                    var mass = frequencies[l].Sum();
                    for (var e = 0; e < 8; e++)
                    {
                        var share = mass > 0 ? frequencies[l][e] / mass : 0;
                        if (taken[l, e] || counts[l] == 7 || share >= bestShare) continue;
                        (bestLayer, bestExpert, bestShare) = (l, e, share);
                    }
                }
                taken[bestLayer, bestExpert] = true;
                counts[bestLayer]++;
            }
            Assert.Equal(counts, ExpertPruning.ConcentrationCounts(frequencies, total));
        }
    }

    [Fact]
    public void Layerwise_counts_follow_the_coefficient_of_variation_and_keep_the_total()
    {
        var random = new Random(3);
        var frequencies = Enumerable.Range(0, 8).Select(l => Enumerable.Range(0, 16).Select(_ => Math.Pow(random.NextDouble(), 1 + l)).ToArray()).ToArray();
        var counts = ExpertPruning.LayerwiseCounts(frequencies, 8 * 5);
        Assert.Equal(40, counts.Sum());
        Assert.All(counts, c => Assert.InRange(c, 0, 15));
        // A naive proportional split: each count is within one of total × cv / Σcv when no layer hits the cap.
        var spread = frequencies.Select(ExpertPruning.CoefficientOfVariation).ToArray();
        for (var l = 0; l < 8; l++) Assert.InRange(counts[l], Math.Floor(40 * spread[l] / spread.Sum()), Math.Ceiling(40 * spread[l] / spread.Sum()));
        Assert.True(counts[7] > counts[0], "the most concentrated layer loses more experts than the flattest");
    }

    [Fact]
    public void All_languages_pool_counts_weighted_by_tokens()
    {
        var profile = Profile(("eng", 10, [[10, 0], [5, 5]]), ("fra", 30, [[0, 30], [3, 27]]));
        var pooled = ExpertPruning.Frequencies(profile, ExpertPruning.AllLanguages);
        Assert.Equal([10 / 40.0, 30 / 40.0], pooled[0]);
        Assert.Equal([8 / 40.0, 32 / 40.0], pooled[1]);
        Assert.Equal([1.0, 0.0], ExpertPruning.Frequencies(profile, "eng")[0]);
        var error = Assert.Throws<UserInputException>(() => ExpertPruning.Frequencies(profile, "deu"));
        Assert.Contains("'deu' is not in the profile", error.Message, StringComparison.Ordinal);
        Assert.Throws<UserInputException>(() => ExpertPruning.Plan(profile, "eng", 0.5, "magnitude"));
    }

    [Fact]
    public void The_exported_checkpoint_gives_the_masked_models_logits_and_generations()
    {
        using var scratch = new ScratchFolder();
        var config = TinyModels.Config();
        using var model = TinyModels.Create(config);
        var partition = MoEfication.Partition(model, 6, MoEfication.Random, seed: 2);
        var frequencies = Enumerable.Range(0, config.NumHiddenLayers).Select(l => Enumerable.Range(0, 6).Select(e => (double)((e * 7 + l * 3) % 6)).ToArray()).ToArray();
        var plan = new ExpertPruningPlan("models/x", "eng", 0.5, ExpertPruning.Layerwise, 0, ExpertPruning.Select(frequencies, 0.5, ExpertPruning.Frequency));
        var (exportedConfig, tensors) = ExpertPruning.Export(config, model.StateDict(), partition, plan);
        Assert.Equal([24, 24], exportedConfig.IntermediateSizes);
        ModelCheckpoint.Save(scratch.Combine("pruned"), exportedConfig, tensors);
        using var pruned = CausalLanguageModel.Load(scratch.Combine("pruned"));
        Assert.Equal(exportedConfig.IntermediateSizes, pruned.Config.IntermediateSizes);

        using var keep = plan.KeepMask();
        using var mask = new ExpertMask(partition, keep);
        var ids = tensor(new long[] { 1, 5, 9, 17, 33, 2, 40, 41, 7, 3 }, [2, 5]);
        using (no_grad())
        {
            var masked = model.Forward(ids, hook: mask);
            var physical = pruned.Forward(ids);
            Assert.True(masked.allclose(physical, rtol: 1e-4, atol: 1e-4), $"max difference {(masked - physical).abs().max().item<float>()}");
            // Pruning changed the model: the dense logits differ.
            Assert.False(model.Forward(ids).allclose(physical, rtol: 1e-3, atol: 1e-3));
        }
        // Greedy generation through the fused KV-cache decoder (per-layer widths) equals the masked model's.
        var options = new SamplingOptions { MaxNewTokens = 8, Temperature = 0 };
        var prompts = new List<int[]> { new[] { 1, 5, 9 }, new[] { 1, 17 } };
        Assert.Equal(TextGenerator.Generate(model, prompts, options, padId: 0, hook: mask), TextGenerator.Generate(pruned, prompts, options, padId: 0));
    }

    [Fact]
    public void Plans_round_trip_through_pruning_json()
    {
        using var scratch = new ScratchFolder();
        var plan = new ExpertPruningPlan("models/x", "all", 0.5, ExpertPruning.Random, 4, [[true, false, true, false], [false, false, true, true]]);
        plan.Save(scratch.Path);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(scratch.Combine(ExpertPruningPlan.FileName)))!;
        Assert.Equal(4, json["pruned_experts"]!.GetValue<int>());
        Assert.Equal("[[0,2],[2,3]]", json["pruned"]!.ToJsonString());
        Assert.Equal([0f, 1, 0, 1, 1, 1, 0, 0], plan.KeepMask().data<float>().ToArray());
    }
}
