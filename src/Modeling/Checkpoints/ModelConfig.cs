using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// The architecture of a Llama-family decoder as Hugging Face's <c>config.json</c> states it
/// (LlamaForCausalLM and Qwen2ForCausalLM fields). Property names follow the JSON keys.
/// </summary>
public sealed record ModelConfig
{
    public const string LlamaArchitecture = "LlamaForCausalLM";
    public const string Qwen2Architecture = "Qwen2ForCausalLM";
    public const string MistralArchitecture = "MistralForCausalLM";
    public const string ConfigFileName = "config.json";

    public string Architecture { get; init; } = LlamaArchitecture;
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    /// <summary>
    /// Per-layer FFN widths of a checkpoint whose layers were pruned to different sizes (Babel's
    /// <c>intermediate_sizes</c>); null when every layer is <see cref="IntermediateSize"/> wide.
    /// </summary>
    public IReadOnlyList<int>? IntermediateSizes { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    /// <summary>Per-head width; Hugging Face derives it as hidden_size / num_attention_heads unless <c>head_dim</c> is given.</summary>
    public int HeadDim { get; init; }
    public int VocabSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on the q, k and v projections (always on for Qwen2; <c>attention_bias</c> for Llama).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Bias on gate_proj, up_proj and down_proj (<c>mlp_bias</c>).</summary>
    public bool MlpBias { get; init; }
    /// <summary>How rotary frequencies are scaled beyond the pretrained context; null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>
    /// Keys a query attends to in a sliding-window layer (itself and the previous window − 1), or null when no layer
    /// slides: Mistral's <c>sliding_window</c>; Qwen2's only with <c>use_sliding_window</c>.
    /// </summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Qwen2: layers below this index attend fully even when <see cref="SlidingWindow"/> is set.</summary>
    public int MaxWindowLayers { get; init; }
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 2;
    public int? PadTokenId { get; init; }
    public string TorchDtype { get; init; } = "float32";

    public int QueryGroupSize => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>The window <paramref name="layer"/> attends within, or null for full causal attention.</summary>
    public int? SlidingWindowOf(int layer) => layer >= MaxWindowLayers ? SlidingWindow : null;

    /// <summary>The FFN width of <paramref name="layer"/>.</summary>
    public int IntermediateSizeOf(int layer) => IntermediateSizes?[layer] ?? IntermediateSize;

    /// <summary>Every tensor a checkpoint of this architecture holds, with its shape, in state-dict order.</summary>
    public IReadOnlyList<(string Name, long[] Shape)> ExpectedTensors()
    {
        var tensors = new List<(string, long[])> { ("model.embed_tokens.weight", [VocabSize, HiddenSize]) };
        long q = NumAttentionHeads * HeadDim, kv = NumKeyValueHeads * HeadDim;
        for (var layer = 0; layer < NumHiddenLayers; layer++)
        {
            var prefix = $"model.layers.{layer}.";
            tensors.Add((prefix + "input_layernorm.weight", [HiddenSize]));
            tensors.Add((prefix + "self_attn.q_proj.weight", [q, HiddenSize]));
            tensors.Add((prefix + "self_attn.k_proj.weight", [kv, HiddenSize]));
            tensors.Add((prefix + "self_attn.v_proj.weight", [kv, HiddenSize]));
            if (AttentionBias)
            {
                tensors.Add((prefix + "self_attn.q_proj.bias", [q]));
                tensors.Add((prefix + "self_attn.k_proj.bias", [kv]));
                tensors.Add((prefix + "self_attn.v_proj.bias", [kv]));
            }
            tensors.Add((prefix + "self_attn.o_proj.weight", [HiddenSize, q]));
            tensors.Add((prefix + "post_attention_layernorm.weight", [HiddenSize]));
            var intermediate = IntermediateSizeOf(layer);
            tensors.Add((prefix + "mlp.gate_proj.weight", [intermediate, HiddenSize]));
            tensors.Add((prefix + "mlp.up_proj.weight", [intermediate, HiddenSize]));
            tensors.Add((prefix + "mlp.down_proj.weight", [HiddenSize, intermediate]));
            if (MlpBias)
            {
                tensors.Add((prefix + "mlp.gate_proj.bias", [intermediate]));
                tensors.Add((prefix + "mlp.up_proj.bias", [intermediate]));
                tensors.Add((prefix + "mlp.down_proj.bias", [HiddenSize]));
            }
        }
        tensors.Add(("model.norm.weight", [HiddenSize]));
        if (!TieWordEmbeddings) tensors.Add(("lm_head.weight", [VocabSize, HiddenSize]));
        return tensors;
    }

    /// <summary>Checks that the numbers describe a buildable model; throws <see cref="UserInputException"/> naming the first problem.</summary>
    public ModelConfig Validate(string source)
    {
        void Require(bool condition, string problem)
        {
            if (!condition) throw new UserInputException($"{source}: {problem}.");
        }
        Require(Architecture is LlamaArchitecture or Qwen2Architecture or MistralArchitecture,
            $"architecture '{Architecture}' is not supported; use {LlamaArchitecture}, {Qwen2Architecture} or {MistralArchitecture}");
        Require(HiddenSize > 0 && IntermediateSize > 0 && NumHiddenLayers > 0 && NumAttentionHeads > 0 && VocabSize > 0,
            "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size must be positive");
        Require(IntermediateSizes is null || (IntermediateSizes.Count == NumHiddenLayers && IntermediateSizes.All(size => size > 0)),
            $"intermediate_sizes must list one positive width for each of the {NumHiddenLayers} layers");
        Require(NumKeyValueHeads > 0 && NumAttentionHeads % NumKeyValueHeads == 0,
            $"num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({NumKeyValueHeads})");
        Require(HeadDim > 0 && HeadDim % 2 == 0, $"head_dim ({HeadDim}) must be a positive even number for rotary embeddings");
        Require(RmsNormEps > 0 && RopeTheta > 0, "rms_norm_eps and rope_theta must be positive");
        Require(SlidingWindow is null or > 0, $"sliding_window ({SlidingWindow}) must be positive");
        Require(RopeScaling?.OriginalMaxPositionEmbeddings is null || RopeScaling.OriginalMaxPositionEmbeddings <= MaxPositionEmbeddings,
            $"rope_scaling's original_max_position_embeddings ({RopeScaling?.OriginalMaxPositionEmbeddings}) must not exceed max_position_embeddings ({MaxPositionEmbeddings})");
        Require(BosTokenId >= 0 && BosTokenId < VocabSize && EosTokenId >= 0 && EosTokenId < VocabSize,
            $"bos_token_id ({BosTokenId}) and eos_token_id ({EosTokenId}) must be below vocab_size ({VocabSize})");
        return this;
    }

    public static ModelConfig Load(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, ConfigFileName);
        if (!File.Exists(path))
        {
            throw new UserInputException($"{path} is missing; a model folder needs the Hugging Face config.json beside its weights.");
        }
        JsonObject json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new UserInputException($"{path} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not valid JSON ({e.Message}).", e);
        }
        return FromJson(json, path);
    }

    public static ModelConfig FromJson(JsonObject json, string source)
    {
        int Required(string key) => json[key] is JsonValue v && v.TryGetValue<int>(out var i)
            ? i
            : throw new UserInputException($"{source} lacks the integer field \"{key}\"; add it (see the model's Hugging Face config).");
        int? Optional(string key) => json[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
        double OptionalDouble(string key, double fallback) => json[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : fallback;
        bool OptionalBool(string key, bool fallback) => json[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : fallback;
        int[]? OptionalIntegers(string key) => json[key] switch
        {
            null => null,
            JsonArray array when array.All(e => e is JsonValue v && v.TryGetValue<int>(out _)) => [.. array.Select(e => e!.GetValue<int>())],
            _ => throw new UserInputException($"{source}: \"{key}\" must be an array of integers."),
        };

        var architecture = json["architectures"] is JsonArray { Count: > 0 } a ? a[0]!.GetValue<string>()
            : json["model_type"]?.GetValue<string>() switch
            {
                "qwen2" => Qwen2Architecture,
                "llama" => LlamaArchitecture,
                "mistral" => MistralArchitecture,
                var other => throw new UserInputException($"{source} names neither \"architectures\" nor a known \"model_type\" (found '{other}'); add \"architectures\": [\"{LlamaArchitecture}\"]."),
            };
        var hidden = Required("hidden_size");
        var heads = Required("num_attention_heads");
        var isQwen2 = architecture == Qwen2Architecture;
        RefuseUnimplemented(json, source);
        var slidingWindow = Optional("sliding_window");
        var maxWindowLayers = 0;
        if (isQwen2)
        {
            // Qwen2 slides only when asked, and only in the layers from max_window_layers on.
            if (!OptionalBool("use_sliding_window", false)) slidingWindow = null;
            maxWindowLayers = Optional("max_window_layers") ?? 28;
        }
        else if (architecture != MistralArchitecture)
        {
            slidingWindow = null;  // LlamaConfig has no sliding window; transformers ignores the key there.
        }
        var config = new ModelConfig
        {
            Architecture = architecture,
            HiddenSize = hidden,
            IntermediateSize = Required("intermediate_size"),
            IntermediateSizes = OptionalIntegers("intermediate_sizes"),
            NumHiddenLayers = Required("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = Optional("num_key_value_heads") ?? heads,
            HeadDim = Optional("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            VocabSize = Required("vocab_size"),
            MaxPositionEmbeddings = Optional("max_position_embeddings") ?? 2048,
            RmsNormEps = OptionalDouble("rms_norm_eps", 1e-6),
            RopeTheta = OptionalDouble("rope_theta", 10000.0),
            TieWordEmbeddings = OptionalBool("tie_word_embeddings", false),
            AttentionBias = isQwen2 || OptionalBool("attention_bias", false),
            MlpBias = OptionalBool("mlp_bias", false),
            RopeScaling = RopeScaling.FromJson(json["rope_scaling"], source),
            SlidingWindow = slidingWindow,
            MaxWindowLayers = maxWindowLayers,
            BosTokenId = Optional("bos_token_id") ?? 1,
            EosTokenId = EosOf(json) ?? 2,
            PadTokenId = Optional("pad_token_id"),
            TorchDtype = json["torch_dtype"]?.GetValue<string>() ?? "float32",
        }.Validate(source);
        // Newer configs list each layer's attention; Babel derives it, so a list that says otherwise is refused.
        if (json["layer_types"] is JsonArray layerTypes)
        {
            var derived = Enumerable.Range(0, config.NumHiddenLayers)
                .Select(layer => config.SlidingWindowOf(layer) is null ? "full_attention" : "sliding_attention");
            if (!layerTypes.Select(type => type?.ToString()).SequenceEqual(derived))
            {
                throw new UserInputException($"{source}: \"layer_types\" differs from what sliding_window, use_sliding_window and max_window_layers give, which is not implemented; remove \"layer_types\".");
            }
        }
        return config;
    }

    // Keys that change what the checkpoint computes but that Babel does not implement: refused, never ignored.
    private static void RefuseUnimplemented(JsonObject json, string source)
    {
        void Refuse(string key, string what) =>
            throw new UserInputException($"{source}: \"{key}\" {what} is not implemented; use a checkpoint without it.");
        bool Set(string key) => json[key] is JsonNode node && !(node is JsonValue v && v.TryGetValue<bool>(out var b) && !b);
        if (json["hidden_act"] is JsonValue act && act.TryGetValue<string>(out var activation) && activation is not ("silu" or "swish"))
        {
            Refuse("hidden_act", $"'{activation}'");
        }
        if (json["partial_rotary_factor"] is JsonValue partial && partial.TryGetValue<double>(out var factor) && factor != 1.0)
        {
            Refuse("partial_rotary_factor", $"{factor} (rotary embedding on part of each head)");
        }
        foreach (var key in new[] { "attn_logit_softcapping", "final_logit_softcapping" })
        {
            if (Set(key)) Refuse(key, "(logit soft-capping)");
        }
        foreach (var key in new[] { "qk_layernorm", "use_qk_norm" })
        {
            if (Set(key)) Refuse(key, "(normalisation of queries and keys)");
        }
    }

    // Some configs list several EOS ids; generation stops at the first.
    private static int? EosOf(JsonObject json) => json["eos_token_id"] switch
    {
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        JsonArray { Count: > 0 } a => a[0]!.GetValue<int>(),
        _ => null,
    };

    public JsonObject ToJson()
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = Architecture switch { Qwen2Architecture => "qwen2", MistralArchitecture => "mistral", _ => "llama" },
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["vocab_size"] = VocabSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["attention_bias"] = AttentionBias,
            ["mlp_bias"] = MlpBias,
            ["hidden_act"] = "silu",
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["torch_dtype"] = TorchDtype,
        };
        if (PadTokenId is { } pad) json["pad_token_id"] = pad;
        if (RopeScaling is { } scaling) json["rope_scaling"] = scaling.ToJson();
        if (Architecture == Qwen2Architecture)
        {
            json["use_sliding_window"] = SlidingWindow is not null;
            json["max_window_layers"] = MaxWindowLayers;
        }
        if (SlidingWindow is { } window) json["sliding_window"] = window;
        if (IntermediateSizes is { } sizes) json["intermediate_sizes"] = new JsonArray([.. sizes.Select(size => (JsonNode)size)]);
        return json;
    }

    public void Save(string modelDirectory) =>
        AtomicFile.WriteAllText(Path.Combine(modelDirectory, ConfigFileName),
            ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
