using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Transformer;

public class GenerationTests
{
    public static TheoryData<bool, bool, int> Architectures => new()
    {
        { false, false, 2 },  // Llama, grouped-query
        { true, false, 4 },   // Qwen2-style q/k/v bias, multi-head
        { false, true, 1 },   // tied embeddings, multi-query
    };

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Cached_decoding_gives_the_logits_of_a_full_forward_over_the_whole_sequence(bool bias, bool tied, int keyValueHeads)
    {
        using var model = TinyModels.Create(TinyModels.Config(bias, tied, heads: 4, keyValueHeads: keyValueHeads));
        using var guard = no_grad();
        int[] prompt = [1, 17, 33, 5, 9];
        int[] continuation = [42, 7, 7, 60, 3, 11];
        using var full = model.Forward(tensor(prompt.Concat(continuation).Select(i => (long)i).ToArray()).unsqueeze(0));

        using var cache = new KeyValueCache(2, 1, keyValueHeads, 8, 32);
        using var decoder = new CachedDecoder(model);
        using var prefill = model.Forward(tensor(prompt.Select(i => (long)i).ToArray()).unsqueeze(0), cache: cache);
        AssertClose(full.narrow(1, 0, prompt.Length), prefill, 1e-4);
        for (var i = 0; i < continuation.Length; i++)
        {
            using var stepLogits = decoder.Step(tensor(new long[] { continuation[i] }), cache);
            AssertClose(full.select(1, prompt.Length + i), stepLogits, 1e-4);
        }
    }

    /// <summary>
    /// The decoder reads the model's parameters in place (a large checkpoint must not be copied for every generation): a
    /// change to the weights after the decoder was made shows in its next step, on the managed single-row path and on the
    /// torch path alike, and that step equals the full forward of the changed model.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_decoder_reads_the_models_weights_in_place(bool torchPath)
    {
        using var model = TinyModels.Create(TinyModels.Config(heads: 4, keyValueHeads: 2));
        using var guard = no_grad();
        long[] prompt = [1, 17, 33, 5];
        using var decoder = new CachedDecoder(model);
        foreach (var (name, parameter) in model.named_parameters()) parameter.mul_(name.Contains("norm", StringComparison.Ordinal) ? 1.5 : 0.8);
        using var full = model.Forward(tensor(prompt).unsqueeze(0));
        using var cache = new KeyValueCache(2, 1, 2, 8, 16);
        model.Forward(tensor(prompt[..^1]).unsqueeze(0), cache: cache).Dispose();
        using var step = decoder.Step(tensor(new[] { prompt[^1] }), cache, torchPath ? new PassThrough() : null);
        AssertClose(full.select(1, prompt.Length - 1), step, 1e-4);
    }

    /// <summary>A hook that changes nothing: it only sends the decoder down its torch path.</summary>
    private sealed class PassThrough : IFeedForwardHook
    {
        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate) => intermediate;
    }

    [Fact]
    public void A_left_padded_batch_gives_each_row_the_logits_of_its_prompt_alone()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        using var guard = no_grad();
        int[][] prompts = [[1, 5, 6], [1, 9, 10, 11, 12, 13], [1]];
        var (ids, mask) = TextGenerator.LeftPad(prompts, padId: 0);
        using var batched = model.Forward(ids, mask);
        var longest = prompts.Max(p => p.Length);
        for (var row = 0; row < prompts.Length; row++)
        {
            using var alone = model.Forward(tensor(prompts[row].Select(i => (long)i).ToArray()).unsqueeze(0));
            AssertClose(alone[0], batched[row].narrow(0, longest - prompts[row].Length, prompts[row].Length), 1e-4);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Greedy_batch_generation_matches_single_prompts_and_the_recompute_path(bool useCache)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        int[][] prompts = [[1, 5, 6], [1, 9, 10, 11, 12, 13], [1]];
        var options = new SamplingOptions { MaxNewTokens = 12, StopAtEos = false };
        var batched = TextGenerator.Generate(model, prompts, options, useCache);
        for (var row = 0; row < prompts.Length; row++)
        {
            var alone = TextGenerator.Generate(model, [prompts[row]], options, useCache: !useCache);
            Assert.Equal(alone[0], batched[row]);
        }
        Assert.True(batched.Select(r => string.Join(",", r)).Distinct().Count() > 1, "different prompts should not all give the same continuation");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Each_row_stops_at_the_first_of_several_eos_ids(bool useCache)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        int[][] prompts = [[1, 5, 6], [1, 9, 10, 11, 12, 13]];
        var all = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 12, StopAtEos = false }, useCache);
        // One stop id from each row's continuation, first reached after a few steps; neither is the config's EOS.
        int[] stops = [.. all.Select(row => row.Skip(2).First(t => Array.IndexOf(row, t) >= 2))];
        Assert.DoesNotContain(model.Config.EosTokenId, stops);
        var stopped = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 12, EosTokenIds = stops }, useCache);
        for (var row = 0; row < prompts.Length; row++)
        {
            // The reference: the unstopped row cut after its first token that is any stop id (kept, as EOS is).
            var end = Array.FindIndex(all[row], t => stops.Contains(t));
            Assert.InRange(end, 2, 11);
            Assert.Equal(all[row][..(end + 1)], stopped[row]);
        }
    }

    [Fact]
    public void Sampling_is_reproducible_from_the_seed_and_changes_with_it()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        int[][] prompts = [[1, 5, 6]];
        SamplingOptions Options(long seed) => new() { MaxNewTokens = 24, Temperature = 1.5, TopK = 20, TopP = 0.95, Seed = seed, StopAtEos = false };
        var first = TextGenerator.Generate(model, prompts, Options(1));
        Assert.Equal(first[0], TextGenerator.Generate(model, prompts, Options(1))[0]);
        Assert.NotEqual(first[0], TextGenerator.Generate(model, prompts, Options(2))[0]);
    }

    [Fact]
    public void Top_k_of_one_is_greedy()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        int[][] prompts = [[1, 5, 6], [1, 8]];
        var greedy = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 10, StopAtEos = false });
        var topOne = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 10, Temperature = 0.8, TopK = 1, Seed = 3, StopAtEos = false });
        Assert.Equal(greedy, topOne);
    }

    [Fact]
    public void Generation_stops_at_eos_and_keeps_it()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        // Make EOS the argmax everywhere by raising its output row.
        using (no_grad()) model.LmHead[model.Config.EosTokenId].add_(100);
        var output = TextGenerator.Generate(model, [[1, 4]], new SamplingOptions { MaxNewTokens = 10 });
        Assert.Equal([model.Config.EosTokenId], output[0]);
    }

    internal static void AssertClose(Tensor expected, Tensor actual, double tolerance)
    {
        Assert.Equal(expected.shape, actual.shape);
        var difference = (expected - actual).abs().max().item<float>();
        var scale = Math.Max(1.0, expected.abs().max().item<float>());
        Assert.True(difference <= tolerance * scale, $"max |difference| {difference} exceeds {tolerance * scale}");
    }
}
