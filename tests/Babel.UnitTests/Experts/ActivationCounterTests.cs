using Babel.Modeling.Experts;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

/// <summary>
/// The counter against a naive count: the tiny model's full activations are captured to the host and the rule is applied
/// in plain loops over tokens, layers and experts, reading <see cref="ExpertPartition.ExpertOfNeuron"/> directly.
/// With random weights, exact ties between expert L1 norms, or a gate pre-activation of exactly 0, are improbable, so
/// both sides must agree exactly.
/// </summary>
public class ActivationCounterTests
{
    private const int Layers = 2;
    private const int Intermediate = 48;

    public static TheoryData<string, int> Rules => new()
    {
        { "topk:1", 6 },
        { "topk:2", 6 },
        { "topk:3", 4 },
        { "threshold:0.5", 4 },
        { "threshold:0.3", 6 },
        { "threshold:1", 12 },
    };

    [Theory]
    [MemberData(nameof(Rules))]
    public void Counts_match_a_naive_count_over_captured_activations_and_exclude_pads(string ruleText, int experts)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        using var guard = no_grad();
        var partition = RandomPartition(experts, seed: 11);
        var rule = ActivationRule.Parse(ruleText);
        using var counter = new ActivationCounter(partition, rule, CPU);
        var expected = new long[Layers][];
        for (var layer = 0; layer < Layers; layer++) expected[layer] = new long[experts];
        long expectedTokens = 0;

        // Two left-padded batches accumulate; the second also leaves out each row's first real token (BOS).
        foreach (var (prompts, countBos) in new[] { (RandomPrompts(seed: 3, rows: 4), true), (RandomPrompts(seed: 4, rows: 3), false) })
        {
            var (ids, padMask) = TextGenerator.LeftPad(prompts, padId: 0);
            using var count = CountMask(prompts, countBos);
            var capture = new CapturingHook();
            model.Forward(ids, padMask, hook: capture).Dispose();
            counter.SetTokenMask(count);
            model.Forward(ids, padMask, hook: counter).Dispose();

            var include = count.data<bool>().ToArray();
            expectedTokens += include.Count(i => i);
            NaiveCount(capture, partition, rule, include, expected);
        }

        Assert.Equal(expectedTokens, counter.Tokens);
        var actual = counter.Counts();
        Assert.Equal(expected, actual);
        // Guard against a vacuous pass: some expert is neither always nor never counted.
        Assert.Contains(actual.SelectMany(l => l), c => c > 0 && c < expectedTokens);
        if (rule is ActivationRule.TopK topK) Assert.All(actual, layer => Assert.Equal(topK.K * expectedTokens, layer.Sum()));

        counter.Reset();
        Assert.Equal(0, counter.Tokens);
        Assert.All(counter.Counts(), layer => Assert.All(layer, c => Assert.Equal(0, c)));
    }

    [Theory]
    [InlineData("topk:2")]
    [InlineData("threshold:0.5")]
    public void A_left_padded_batch_counts_what_its_rows_count_alone(string ruleText)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        using var guard = no_grad();
        var partition = RandomPartition(experts: 6, seed: 5);
        var rule = ActivationRule.Parse(ruleText);
        var prompts = RandomPrompts(seed: 9, rows: 4);

        using var batched = new ActivationCounter(partition, rule, CPU);
        var (ids, mask) = TextGenerator.LeftPad(prompts, padId: 0);
        batched.SetTokenMask(mask);
        model.Forward(ids, mask, hook: batched).Dispose();

        using var alone = new ActivationCounter(partition, rule, CPU);
        foreach (var prompt in prompts)
        {
            using var row = tensor(prompt.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var all = ones_like(row, dtype: ScalarType.Bool);
            alone.SetTokenMask(all);
            model.Forward(row, hook: alone).Dispose();
        }

        Assert.Equal(prompts.Sum(p => p.Length), batched.Tokens);
        Assert.Equal(alone.Tokens, batched.Tokens);
        Assert.Equal(alone.Counts(), batched.Counts());
    }

    /// <summary>
    /// The profile job's path: the model's neurons grouped by the partition (<see cref="ExpertLayout.GroupByExpert"/>) and
    /// counted with the contiguous partition that describes it. The grouped model computes the same logits (to float
    /// rounding of down_proj's sum), and its counts equal the naive count of the ungrouped model under the original partition.
    /// </summary>
    [Theory]
    [InlineData("topk:2", 6)]
    [InlineData("topk:1", 4)]
    [InlineData("threshold:0.5", 4)]
    [InlineData("threshold:0.3", 6)]
    public void A_model_grouped_by_its_partition_counts_what_the_naive_count_of_the_original_finds(string ruleText, int experts)
    {
        using var original = TinyModels.Create(TinyModels.Config());
        using var model = TinyModels.Create(TinyModels.Config());
        using var guard = no_grad();
        var partition = RandomPartition(experts, seed: 23);
        var rule = ActivationRule.Parse(ruleText);
        var grouped = ExpertLayout.GroupByExpert(model, partition);
        Assert.True(grouped.IsContiguous);
        Assert.False(partition.IsContiguous);
        Assert.Equal(partition.Experts, grouped.Experts);
        // The weights really moved: the first gate row is now the first neuron of expert 0, not neuron 0.
        var first = partition.NeuronOrder()[0][0];
        Assert.NotEqual(0, first);
        Assert.True(model.Layers[0].Mlp.GateProj.weight[0].eq(original.Layers[0].Mlp.GateProj.weight[first]).all().item<bool>());

        var prompts = RandomPrompts(seed: 8, rows: 4);
        var (ids, padMask) = TextGenerator.LeftPad(prompts, padId: 0);
        using var count = CountMask(prompts, countBos: true);
        var capture = new CapturingHook();
        using var expectedLogits = original.Forward(ids, padMask, hook: capture);
        using var counter = new ActivationCounter(grouped, rule, CPU);
        counter.SetTokenMask(count);
        using var logits = model.Forward(ids, padMask, hook: counter);
        Assert.True(logits.allclose(expectedLogits, rtol: 0, atol: 1e-5));

        var include = count.data<bool>().ToArray();
        var expected = Enumerable.Range(0, Layers).Select(_ => new long[experts]).ToArray();
        NaiveCount(capture, partition, rule, include, expected);
        var actual = counter.Counts();
        Assert.Equal(expected, actual);
        Assert.Contains(actual.SelectMany(l => l), c => c > 0 && c < include.Count(i => i));
    }

    [Fact]
    public void The_counter_returns_the_intermediate_activation_unchanged()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        using var guard = no_grad();
        using var counter = new ActivationCounter(RandomPartition(experts: 4, seed: 2), ActivationRule.Parse("topk:2"), CPU);
        using var ids = tensor(new long[] { 1, 17, 33, 5, 9 }).unsqueeze(0);
        using var plain = model.Forward(ids);
        using var all = ones_like(ids, dtype: ScalarType.Bool);
        counter.SetTokenMask(all);
        using var counted = model.Forward(ids, hook: counter);
        Assert.True(plain.eq(counted).all().item<bool>());
    }

    [Theory]
    [InlineData("topk:4", "topk:4")]
    [InlineData(" TopK : 04 ", "topk:4")]
    [InlineData("threshold:0.50", "threshold:0.5")]
    [InlineData("threshold:1", "threshold:1")]
    [InlineData("threshold:.25", "threshold:0.25")]
    public void Rules_parse_to_their_canonical_text(string text, string canonical)
    {
        var rule = ActivationRule.Parse(text);
        Assert.Equal(canonical, rule.ToString());
        Assert.Equal(rule, ActivationRule.Parse(canonical));
    }

    [Theory]
    [InlineData("threshold:0")]
    [InlineData("threshold:-0.5")]
    [InlineData("threshold:1.5")]
    [InlineData("threshold:NaN")]
    [InlineData("threshold:")]
    [InlineData("topk:x")]
    [InlineData("topk:0")]
    [InlineData("topk:-1")]
    [InlineData("topk:1.5")]
    [InlineData("topk")]
    [InlineData("top:4")]
    [InlineData("")]
    public void Malformed_rules_are_user_errors_that_list_the_forms(string text)
    {
        var error = Assert.Throws<UserInputException>(() => ActivationRule.Parse(text));
        Assert.Contains("topk:K", error.Message, StringComparison.Ordinal);
        Assert.Contains("threshold:T", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_top_k_above_the_number_of_experts_is_a_user_error_when_bound_to_the_partition()
    {
        var partition = RandomPartition(experts: 6, seed: 1);
        var rule = ActivationRule.Parse("topk:7");
        var error = Assert.Throws<UserInputException>(() => new ActivationCounter(partition, rule, CPU));
        Assert.Contains("6", error.Message, StringComparison.Ordinal);
        using var fits = new ActivationCounter(partition, ActivationRule.Parse("topk:6"), CPU);
    }

    /// <summary>Each layer's neurons shuffled with a seeded permutation, then cut into equal experts: far from contiguous.</summary>
    private static ExpertPartition RandomPartition(int experts, int seed)
    {
        var random = new Random(seed);
        var size = Intermediate / experts;
        var assignment = new int[Layers][];
        for (var layer = 0; layer < Layers; layer++)
        {
            var neurons = Enumerable.Range(0, Intermediate).ToArray();
            random.Shuffle(neurons);
            assignment[layer] = new int[Intermediate];
            for (var position = 0; position < Intermediate; position++) assignment[layer][neurons[position]] = position / size;
        }
        return new ExpertPartition { Experts = experts, IntermediateSize = Intermediate, Method = "random", Seed = seed, ExpertOfNeuron = assignment }
            .Validate("test partition");
    }

    private static int[][] RandomPrompts(int seed, int rows)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, rows).Select(_ => new[] { 1 }.Concat(Enumerable.Range(0, random.Next(2, 12)).Select(_ => random.Next(3, 61))).ToArray())];
    }

    /// <summary>[batch, tokens] bool: the real tokens of left-padded rows, with or without each row's first (BOS).</summary>
    private static Tensor CountMask(int[][] prompts, bool countBos)
    {
        var longest = prompts.Max(p => p.Length);
        var include = new bool[prompts.Length * longest];
        for (var row = 0; row < prompts.Length; row++)
        {
            var first = longest - prompts[row].Length + (countBos ? 0 : 1);
            for (var position = first; position < longest; position++) include[row * longest + position] = true;
        }
        return tensor(include).view(prompts.Length, longest);
    }

    private static void NaiveCount(CapturingHook capture, ExpertPartition partition, ActivationRule rule, bool[] include, long[][] counts)
    {
        var experts = partition.Experts;
        for (var token = 0; token < include.Length; token++)
        {
            if (!include[token]) continue;
            for (var layer = 0; layer < Layers; layer++)
            {
                var gate = capture.Gate[layer].AsSpan(token * Intermediate, Intermediate);
                var intermediate = capture.Intermediate[layer].AsSpan(token * Intermediate, Intermediate);
                var l1 = new double[experts];
                var positive = new int[experts];
                var size = new int[experts];
                for (var neuron = 0; neuron < Intermediate; neuron++)
                {
                    var expert = partition.ExpertOfNeuron[layer][neuron];
                    l1[expert] += Math.Abs(intermediate[neuron]);
                    if (gate[neuron] > 0) positive[expert]++;
                    size[expert]++;
                }
                switch (rule)
                {
                    case ActivationRule.TopK topK:
                        foreach (var expert in Enumerable.Range(0, experts).OrderByDescending(e => l1[e]).Take(topK.K)) counts[layer][expert]++;
                        break;
                    case ActivationRule.Threshold threshold:
                        for (var expert = 0; expert < experts; expert++)
                        {
                            if ((double)positive[expert] / size[expert] >= threshold.Fraction) counts[layer][expert]++;
                        }
                        break;
                }
            }
        }
    }

    /// <summary>Copies every layer's gate pre-activation and intermediate activation to the host.</summary>
    private sealed class CapturingHook : IFeedForwardHook
    {
        public float[][] Gate { get; } = new float[Layers][];
        public float[][] Intermediate { get; } = new float[Layers][];

        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
        {
            using var hostGate = gate.cpu().contiguous();
            using var hostIntermediate = intermediate.cpu().contiguous();
            Gate[layer] = hostGate.data<float>().ToArray();
            Intermediate[layer] = hostIntermediate.data<float>().ToArray();
            return intermediate;
        }
    }
}
