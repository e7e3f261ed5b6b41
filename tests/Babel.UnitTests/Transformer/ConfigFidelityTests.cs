using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Transformer;

/// <summary>
/// Config keys that change the computation (rope_scaling, head_dim, mlp_bias, sliding windows) against the plain-loop
/// <see cref="HuggingFaceReferenceForward"/>, at positions beyond the original context where scaling matters.
/// </summary>
public class ConfigFidelityTests
{
    // Pretrained context 64, model context 256: prompts of 80 tokens reach positions that only scaling makes sense of.
    private const int Original = 64;
    private const int LongPrompt = 80;

    public static TheoryData<string> RopeTypes => new() { "linear", "dynamic", "yarn", "llama3", "yarn-mscale" };

    private static RopeScaling Scaling(string type) => type switch
    {
        "linear" => new RopeScaling { Type = RopeScaling.Linear, Factor = 4 },
        "dynamic" => new RopeScaling { Type = RopeScaling.Dynamic, Factor = 2, OriginalMaxPositionEmbeddings = Original },
        "yarn" => new RopeScaling { Type = RopeScaling.Yarn, Factor = 4, OriginalMaxPositionEmbeddings = Original },
        "yarn-mscale" => new RopeScaling { Type = RopeScaling.Yarn, Factor = 4, OriginalMaxPositionEmbeddings = Original, Mscale = 0.9, MscaleAllDim = 0.7, BetaFast = 16, BetaSlow = 2 },
        _ => new RopeScaling { Type = RopeScaling.Llama3, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = Original },
    };

    // θ = 100 with head_dim 8 gives wavelengths of 6, 20, 63 and 199 tokens: below, inside and above llama3's band.
    private static ModelConfig Config(RopeScaling? scaling = null) => TinyModels.Config() with
    {
        MaxPositionEmbeddings = 256,
        RopeTheta = 100,
        RopeScaling = scaling,
    };

    [Theory]
    [MemberData(nameof(RopeTypes))]
    public void Inverse_frequencies_match_the_reference_formulas(string type)
    {
        var config = Config(Scaling(type));
        foreach (var length in new[] { 10, Original, LongPrompt, 200 })
        {
            var expected = HuggingFaceReferenceForward.InverseFrequencies(config, length);
            var actual = RotaryEmbedding.InverseFrequencies(config.HeadDim, config.RopeTheta, config.RopeScaling, config.MaxPositionEmbeddings, length);
            Assert.Equal(expected, actual, (a, b) => Math.Abs(a - b) <= 1e-12 * Math.Abs(a));
        }
        var plain = HuggingFaceReferenceForward.InverseFrequencies(Config(), LongPrompt);
        Assert.NotEqual(plain, HuggingFaceReferenceForward.InverseFrequencies(config, LongPrompt));
    }

    [Theory]
    [MemberData(nameof(RopeTypes))]
    public void Scaled_rope_logits_at_long_positions_match_the_reference(string type)
    {
        var config = Config(Scaling(type));
        using var model = TinyModels.Create(config);
        var tokens = Tokens(LongPrompt);
        AssertMatchesReference(model, tokens);

        // The comparison can fail: unscaled RoPE gives other logits at long positions.
        var unscaled = HuggingFaceReferenceForward.Logits(Config(), model.StateDict(), tokens);
        var scaled = HuggingFaceReferenceForward.Logits(config, model.StateDict(), tokens);
        Assert.True(scaled[^1].Zip(unscaled[^1]).Max(p => Math.Abs(p.First - p.Second)) > 1e-2);
    }

    [Fact]
    public void Llama_3_1_rope_scaling_gives_the_frequencies_of_the_formula()
    {
        var json = JsonNode.Parse("""{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}""");
        var scaling = RopeScaling.FromJson(json, "config.json")!;
        var frequencies = RotaryEmbedding.InverseFrequencies(128, 500000, scaling, 131072, 0);

        // Pair 0: wavelength 2π, shorter than 8192/4, kept.
        Assert.Equal(1.0, frequencies[0], 15);
        // Pair 32: θ^(-1/2), wavelength 4443 lies between 2048 and 8192, so it is blended.
        var f32 = 1 / Math.Sqrt(500000);
        var smooth = (8192 / (2 * Math.PI / f32) - 1) / (4 - 1);
        Assert.Equal((1 - smooth) * f32 / 8 + smooth * f32, frequencies[32], 15);
        Assert.Equal(0.000524846, frequencies[32], 9);  // 0.3711 × 0.0014142, worked by hand
        // Pair 40: wavelength ~ 2π·500000^0.625 ≈ 23,500 > 8192, divided by 8.
        Assert.Equal(Math.Pow(500000, -80.0 / 128) / 8, frequencies[40], 15);
        // Pair 63: the slowest, divided by 8.
        Assert.Equal(Math.Pow(500000, -126.0 / 128) / 8, frequencies[63], 15);
        Assert.Equal(1.0, RotaryEmbedding.AttentionFactorOf(scaling, 131072));
    }

    [Fact]
    public void Yarn_attention_factor_follows_transformers()
    {
        Assert.Equal(0.1 * Math.Log(4) + 1, RotaryEmbedding.AttentionFactorOf(Scaling("yarn"), 256), 12);
        Assert.Equal((0.09 * Math.Log(4) + 1) / (0.07 * Math.Log(4) + 1), RotaryEmbedding.AttentionFactorOf(Scaling("yarn-mscale"), 256), 12);
        Assert.Equal(1.25, RotaryEmbedding.AttentionFactorOf(Scaling("yarn") with { AttentionFactor = 1.25 }, 256));
    }

    [Fact]
    public void Explicit_head_dim_and_mlp_bias_match_the_reference()
    {
        var config = Config() with { HeadDim = 12, MlpBias = true };
        using var model = TinyModels.Create(config);
        RandomizeBiases(model);
        Assert.Equal(48, model.Layers[0].SelfAttn.QProj.weight!.shape[0]);
        AssertMatchesReference(model, Tokens(20));
    }

    [Fact]
    public void Mistral_sliding_window_matches_the_reference()
    {
        var config = Config() with { Architecture = ModelConfig.MistralArchitecture, SlidingWindow = 5 };
        using var model = TinyModels.Create(config);
        var tokens = Tokens(24);
        AssertMatchesReference(model, tokens);
        var full = HuggingFaceReferenceForward.Logits(config with { SlidingWindow = null }, model.StateDict(), tokens);
        Assert.True(full[^1].Zip(HuggingFaceReferenceForward.Logits(config, model.StateDict(), tokens)[^1]).Max(p => Math.Abs(p.First - p.Second)) > 1e-2);
    }

    [Fact]
    public void Qwen2_slides_only_from_max_window_layers_on()
    {
        var config = TinyModels.Config(qkvBias: true) with { SlidingWindow = 4, MaxWindowLayers = 1 };
        Assert.Null(config.SlidingWindowOf(0));
        Assert.Equal(4, config.SlidingWindowOf(1));
        using var model = TinyModels.Create(config);
        RandomizeBiases(model);
        AssertMatchesReference(model, Tokens(20));
    }

    public static TheoryData<string> Features => new() { "linear", "dynamic", "yarn", "llama3", "mlp_bias", "mistral-window", "qwen2-window" };

    [Theory]
    [MemberData(nameof(Features))]
    public void Cached_decoder_gives_the_greedy_tokens_and_logits_of_the_full_forward(string feature)
    {
        var config = feature switch
        {
            "mlp_bias" => Config() with { MlpBias = true, HeadDim = 12 },
            "mistral-window" => Config() with { Architecture = ModelConfig.MistralArchitecture, SlidingWindow = 7 },
            "qwen2-window" => Config() with { Architecture = ModelConfig.Qwen2Architecture, AttentionBias = true, SlidingWindow = 6, MaxWindowLayers = 1 },
            _ => Config(Scaling(feature)),
        };
        using var model = TinyModels.Create(config);
        RandomizeBiases(model);
        using var guard = no_grad();
        var prompt = Tokens(Original - 4).Select(t => (long)t).ToList();
        const int steps = 10;

        using var cache = new KeyValueCache(config.NumHiddenLayers, 1, config.NumKeyValueHeads, config.HeadDim, prompt.Count + steps);
        using var decoder = new CachedDecoder(model);
        var logits = model.Forward(tensor(prompt.ToArray()).unsqueeze(0), cache: cache).select(1, -1);
        var sequence = new List<long>(prompt);
        for (var step = 0; step < steps; step++)
        {
            var token = logits.argmax(-1).item<long>();
            if (feature == "dynamic")
            {
                // transformers keeps the keys a cache holds as they were rotated, so dynamic scaling is compared
                // with the full forward run incrementally over the same cache semantics.
                using var reference = new KeyValueCache(config.NumHiddenLayers, 1, config.NumKeyValueHeads, config.HeadDim, prompt.Count + steps);
                using var prefill = model.Forward(tensor(prompt.ToArray()).unsqueeze(0), cache: reference);
                Tensor last = prefill.select(1, -1);
                foreach (var fed in sequence.Skip(prompt.Count)) last = model.Forward(tensor(new[] { fed }).unsqueeze(0), cache: reference).select(1, -1);
                Assert.Equal(last.argmax(-1).item<long>(), token);
                GenerationTests.AssertClose(last, logits, 1e-4);
            }
            else
            {
                using var full = model.Forward(tensor(sequence.ToArray()).unsqueeze(0));
                Assert.Equal(full.select(1, -1).argmax(-1).item<long>(), token);
                GenerationTests.AssertClose(full.select(1, -1), logits, 1e-4);
            }
            sequence.Add(token);
            logits.Dispose();
            logits = decoder.Step(tensor(new[] { token }), cache);
        }
        logits.Dispose();
        Assert.True(sequence.Count > Original, "decoding must pass the original context");
    }

    [Theory]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 4.0, \"short_factor\": [1], \"long_factor\": [1]}", "longrope")]
    [InlineData("\"rope_scaling\": {\"type\": \"su\", \"short_factor\": [1], \"long_factor\": [1]}", "'su'")]
    [InlineData("\"attn_logit_softcapping\": 50.0", "attn_logit_softcapping")]
    [InlineData("\"final_logit_softcapping\": 30.0", "final_logit_softcapping")]
    [InlineData("\"partial_rotary_factor\": 0.5", "partial_rotary_factor")]
    [InlineData("\"qk_layernorm\": true", "qk_layernorm")]
    [InlineData("\"hidden_act\": \"gelu_pytorch_tanh\"", "hidden_act")]
    [InlineData("\"use_sliding_window\": true, \"sliding_window\": 4, \"max_window_layers\": 1, \"layer_types\": [\"sliding_attention\", \"sliding_attention\"]", "layer_types")]
    public void Unimplemented_keys_are_refused_in_one_sentence_naming_the_key_and_the_file(string entry, string named)
    {
        var json = (JsonObject)JsonNode.Parse($$"""
            {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "vocab_size": 61, {{entry}}}
            """)!;
        var error = CheckpointTestFiles.AssertUserError(() => ModelConfig.FromJson(json, "/models/x/config.json"), named, "/models/x/config.json");
        Assert.EndsWith(".", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(". ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Config_keys_parse_and_round_trip()
    {
        var json = (JsonObject)JsonNode.Parse("""
            {"architectures": ["MistralForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "head_dim": 12, "vocab_size": 61, "mlp_bias": true, "sliding_window": 4096,
             "hidden_act": "silu", "attn_logit_softcapping": null, "partial_rotary_factor": 1.0,
             "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 32, "beta_slow": 1, "mscale": 1, "mscale_all_dim": 0}}
            """)!;
        var config = ModelConfig.FromJson(json, "config.json");
        Assert.Equal((12, true, 4096), (config.HeadDim, config.MlpBias, config.SlidingWindowOf(0)));
        Assert.Equal(new RopeScaling { Type = "yarn", Factor = 4, OriginalMaxPositionEmbeddings = 1024, BetaFast = 32, BetaSlow = 1, Mscale = 1, MscaleAllDim = 0 }, config.RopeScaling);
        Assert.Equal(config, ModelConfig.FromJson(config.ToJson(), "saved"), ConfigComparer);

        var qwen = (JsonObject)JsonNode.Parse("""
            {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "vocab_size": 61, "sliding_window": 131072, "use_sliding_window": false, "max_window_layers": 21,
             "rope_scaling": {"rope_type": "default"}}
            """)!;
        var qwenConfig = ModelConfig.FromJson(qwen, "config.json");
        Assert.Null(qwenConfig.SlidingWindow);
        Assert.Null(qwenConfig.RopeScaling);
        Assert.Equal(qwenConfig, ModelConfig.FromJson(qwenConfig.ToJson(), "saved"), ConfigComparer);
    }

    // Records compare lists by reference; the round trip compares what the JSON says.
    private static readonly IEqualityComparer<ModelConfig> ConfigComparer = EqualityComparer<ModelConfig>.Create(
        (a, b) => a!.ToJson().ToJsonString() == b!.ToJson().ToJsonString());

    private static int[] Tokens(int count)
    {
        var random = new Random(count);
        return [1, .. Enumerable.Range(1, count - 1).Select(_ => random.Next(3, 61))];
    }

    private static void RandomizeBiases(CausalLanguageModel model)
    {
        using var guard = no_grad();
        var generator = new Generator(11);
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.copy_(randn(parameter.shape, generator: generator));
        }
    }

    private static void AssertMatchesReference(CausalLanguageModel model, int[] tokens)
    {
        using var guard = no_grad();
        var expected = HuggingFaceReferenceForward.Logits(model.Config, model.StateDict(), tokens);
        using var actual = model.Forward(tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0));
        var values = HuggingFaceReferenceForward.ToArray(actual);
        var vocab = model.Config.VocabSize;
        var scale = Math.Max(1.0, expected.Max(row => row.Max(Math.Abs)));
        var difference = expected.SelectMany((row, position) => row.Select((value, v) => Math.Abs(value - values[position * vocab + v]))).Max();
        Assert.True(difference <= 1e-4 * scale, $"max |Δlogit| = {difference} at scale {scale}");
    }
}
