using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// The <c>rope_scaling</c> object of a Hugging Face config: how rotary frequencies are stretched beyond the
/// context the model was pretrained on. Field names follow transformers' <c>modeling_rope_utils.py</c>.
/// </summary>
public sealed record RopeScaling
{
    public const string Linear = "linear";
    public const string Dynamic = "dynamic";
    public const string Yarn = "yarn";
    public const string Llama3 = "llama3";
    private static readonly string[] Supported = [Linear, Dynamic, Yarn, Llama3];

    /// <summary><c>rope_type</c> (legacy key <c>type</c>): linear, dynamic, yarn or llama3.</summary>
    public required string Type { get; init; }
    public double Factor { get; init; } = 1.0;
    /// <summary>llama3: wavelengths longer than original / low_freq_factor are divided by <see cref="Factor"/>.</summary>
    public double? LowFreqFactor { get; init; }
    /// <summary>llama3: wavelengths shorter than original / high_freq_factor are kept.</summary>
    public double? HighFreqFactor { get; init; }
    /// <summary>The pretrained context; transformers falls back to max_position_embeddings where a type allows it.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }
    /// <summary>yarn: rotations bounding the interpolation ramp (defaults 32 and 1).</summary>
    public double? BetaFast { get; init; }
    public double? BetaSlow { get; init; }
    /// <summary>yarn: DeepSeek-style attention scaling, mscale / mscale_all_dim, used when both are non-zero.</summary>
    public double? Mscale { get; init; }
    public double? MscaleAllDim { get; init; }
    /// <summary>yarn: the factor cos and sin are multiplied by; derived from the factor when absent.</summary>
    public double? AttentionFactor { get; init; }
    /// <summary>yarn: round the ramp's bounds to whole dimensions (transformers' default).</summary>
    public bool Truncate { get; init; } = true;

    /// <summary>The context the scaling is relative to.</summary>
    public int OriginalContext(int maxPositionEmbeddings) => OriginalMaxPositionEmbeddings ?? maxPositionEmbeddings;

    /// <summary>Parses <c>rope_scaling</c>; null for an absent object or type <c>default</c>. Unsupported types are refused.</summary>
    public static RopeScaling? FromJson(JsonNode? node, string source)
    {
        if (node is null) return null;
        if (node is not JsonObject json) throw new UserInputException($"{source}: \"rope_scaling\" must be an object or null.");
        var type = Text(json["rope_type"]) ?? Text(json["type"]) ?? "default";
        if (type == "default") return null;
        if (!Supported.Contains(type))
        {
            throw new UserInputException($"{source}: rope_scaling of type '{type}' is not implemented (Babel implements {string.Join(", ", Supported)}); use a checkpoint without it.");
        }
        double? Number(string key) => json[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : null;
        int? Integer(string key) => json[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : Number(key) is { } d && d == Math.Floor(d) ? (int)d : null;
        double RequiredNumber(string key) => Number(key)
            ?? throw new UserInputException($"{source}: rope_scaling of type '{type}' needs the number \"{key}\".");
        var scaling = new RopeScaling
        {
            Type = type,
            Factor = RequiredNumber("factor"),
            LowFreqFactor = type == Llama3 ? RequiredNumber("low_freq_factor") : Number("low_freq_factor"),
            HighFreqFactor = type == Llama3 ? RequiredNumber("high_freq_factor") : Number("high_freq_factor"),
            OriginalMaxPositionEmbeddings = type == Llama3
                ? Integer("original_max_position_embeddings") ?? throw new UserInputException($"{source}: rope_scaling of type 'llama3' needs the integer \"original_max_position_embeddings\".")
                : Integer("original_max_position_embeddings"),
            BetaFast = Number("beta_fast"),
            BetaSlow = Number("beta_slow"),
            Mscale = Number("mscale"),
            MscaleAllDim = Number("mscale_all_dim"),
            AttentionFactor = Number("attention_factor"),
            Truncate = json["truncate"] is not JsonValue t || !t.TryGetValue<bool>(out var truncate) || truncate,
        };
        return scaling.Validate(source);
    }

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private RopeScaling Validate(string source)
    {
        void Require(bool condition, string problem)
        {
            if (!condition) throw new UserInputException($"{source}: rope_scaling {problem}.");
        }
        Require(Factor >= 1, $"factor ({Factor}) must be at least 1");
        Require(OriginalMaxPositionEmbeddings is null or > 0, "original_max_position_embeddings must be positive");
        if (Type == Llama3)
        {
            Require(HighFreqFactor > LowFreqFactor && LowFreqFactor > 0, $"high_freq_factor ({HighFreqFactor}) must exceed low_freq_factor ({LowFreqFactor}), which must be positive");
        }
        if (Type == Yarn)
        {
            Require((BetaFast ?? 32) > (BetaSlow ?? 1) && (BetaSlow ?? 1) > 0, "beta_fast must exceed beta_slow, which must be positive");
            Require(AttentionFactor is null or > 0, "attention_factor must be positive");
        }
        return this;
    }

    public JsonObject ToJson()
    {
        var json = new JsonObject { ["rope_type"] = Type, ["factor"] = Factor };
        void Add(string key, double? value)
        {
            if (value is { } v) json[key] = v;
        }
        Add("low_freq_factor", LowFreqFactor);
        Add("high_freq_factor", HighFreqFactor);
        if (OriginalMaxPositionEmbeddings is { } original) json["original_max_position_embeddings"] = original;
        Add("beta_fast", BetaFast);
        Add("beta_slow", BetaSlow);
        Add("mscale", Mscale);
        Add("mscale_all_dim", MscaleAllDim);
        Add("attention_factor", AttentionFactor);
        if (!Truncate) json["truncate"] = false;
        return json;
    }
}
