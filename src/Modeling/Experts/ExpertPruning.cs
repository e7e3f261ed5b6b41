using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// Which experts to switch off, and why: <see cref="Pruned"/>[layer][expert] is true for a pruned expert. Stored as
/// <c>pruning.json</c>; <see cref="KeepMask"/> turns it into the [layers, experts] 0/1 mask of <see cref="ExpertMask"/>.
/// </summary>
public sealed record ExpertPruningPlan(string Model, string Language, double Rate, string Strategy, long Seed, bool[][] Pruned)
{
    public const string FileName = "pruning.json";

    public int Layers => Pruned.Length;
    public int Experts => Pruned[0].Length;
    public int PrunedCount => Pruned.Sum(layer => layer.Count(p => p));
    public int[] PrunedPerLayer => [.. Pruned.Select(layer => layer.Count(p => p))];

    /// <summary>[layers, experts] float mask: 1 keeps an expert, 0 switches it off.</summary>
    public Tensor KeepMask() =>
        tensor(Pruned.SelectMany(layer => layer.Select(p => p ? 0f : 1f)).ToArray(), [Layers, Experts]);

    public string ToJson() => new JsonObject
    {
        ["model"] = Model,
        ["language"] = Language,
        ["rate"] = Rate,
        ["strategy"] = Strategy,
        ["seed"] = Seed,
        ["layers"] = Layers,
        ["experts"] = Experts,
        ["pruned_experts"] = PrunedCount,
        ["pruned_per_layer"] = new JsonArray([.. PrunedPerLayer.Select(c => (JsonNode)c)]),
        ["pruned"] = new JsonArray([.. Pruned.Select(layer =>
            (JsonNode)new JsonArray([.. layer.Select((p, expert) => (expert, p)).Where(e => e.p).Select(e => (JsonNode)e.expert)]))]),
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    public void Save(string directory) => AtomicFile.WriteAllText(Path.Combine(directory, FileName), ToJson());
}

/// <summary>
/// Expert pruning guided by an activation profile. A rate R prunes round(R·E) experts per layer (at least one, at
/// most E−1), so every strategy removes the same number of experts:
/// <list type="bullet">
/// <item><c>frequency</c>: in every layer, the experts the language activates least often (ties: lower expert id first).</item>
/// <item><c>random</c>: in every layer, the same number chosen uniformly at random from a seed.</item>
/// <item><c>layerwise</c>: the same total, spread over layers in proportion to each layer's activation spread
/// (the coefficient of variation of its experts' frequencies), then the least frequent experts within each layer.
/// A layer whose activations concentrate on a few experts has more rarely used experts to lose. Under a
/// <c>topk:K</c> rule every layer's mean frequency is K/E, so the spread, not the mean, is what differs. Babel's own
/// allocation rule.</item>
/// <item><c>concentration</c>: the same total, with per-layer rates from activation concentration (Babel's reading of the
/// paper's "configuring different pruning rates for different layers based on activation level differences"): every
/// expert's share of its layer's activation mass, s(l,e) = f(l,e) / Σ_e' f(l,e'), is compared with one bar over all layers,
/// and the experts below it are pruned (the lowest shares over the whole model; at most E−1 per layer). Layer l's rate is
/// the fraction of its experts below the bar, high where the layer's mass sits in few experts. Under <c>topk:K</c> every
/// layer's mass is K, so this prunes the least frequent experts of the whole model.</item>
/// </list>
/// </summary>
public static class ExpertPruning
{
    public const string Frequency = "frequency";
    public const string Random = "random";
    public const string Layerwise = "layerwise";
    public const string Concentration = "concentration";
    /// <summary>Pools every language of the profile (token-weighted).</summary>
    public const string AllLanguages = "all";

    public static IReadOnlyList<string> Strategies { get; } = [Frequency, Random, Layerwise, Concentration];

    public static string RequireStrategy(string strategy) => Strategies.Contains(strategy)
        ? strategy
        : throw new UserInputException($"Unknown pruning strategy '{strategy}'; use {string.Join(", ", Strategies)}.");

    /// <summary>Returns <paramref name="rate"/> when it lies in (0, 1); otherwise a user error.</summary>
    public static double RequireRate(double rate) => rate > 0 && rate < 1
        ? rate
        : throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"The pruning rate {rate} is outside (0, 1); give the fraction of experts to prune, e.g. 0.2."));

    /// <summary>Experts pruned per layer at <paramref name="rate"/>; a rate must prune at least one and keep at least one.</summary>
    public static int ExpertsPerLayer(double rate, int experts)
    {
        RequireRate(rate);
        var count = (int)Math.Round(rate * experts, MidpointRounding.AwayFromZero);
        if (count < 1 || count > experts - 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"A rate of {rate} prunes {count} of {experts} experts per layer; choose a rate that prunes between 1 and {experts - 1}."));
        }
        return count;
    }

    /// <summary>frequency[layer][expert] of one language of the profile, or of all languages pooled.</summary>
    public static double[][] Frequencies(ActivationProfile profile, string language)
    {
        if (language == AllLanguages)
        {
            var tokens = profile.Languages.Values.Sum(l => l.Tokens);
            return [.. Enumerable.Range(0, profile.Layers).Select(layer => Enumerable.Range(0, profile.Experts)
                .Select(expert => tokens == 0 ? 0.0 : (double)profile.Languages.Values.Sum(l => l.Counts[layer][expert]) / tokens).ToArray())];
        }
        if (!profile.Languages.TryGetValue(language, out var activations))
        {
            throw new UserInputException($"Language '{language}' is not in the profile; it has {string.Join(", ", profile.Languages.Keys)} (or use 'all').");
        }
        return activations.Frequencies();
    }

    /// <summary>The plan for one (language, rate, strategy, seed) of <paramref name="profile"/>.</summary>
    public static ExpertPruningPlan Plan(ActivationProfile profile, string language, double rate, string strategy, long seed = 0) =>
        new(profile.Model, language, rate, RequireStrategy(strategy), strategy == Random ? seed : 0,
            Select(Frequencies(profile, language), rate, strategy, seed));

    /// <summary>pruned[layer][expert] for the strategy (see the type's summary).</summary>
    public static bool[][] Select(double[][] frequencies, double rate, string strategy, long seed = 0)
    {
        var experts = frequencies[0].Length;
        var perLayer = ExpertsPerLayer(rate, experts);
        var counts = RequireStrategy(strategy) switch
        {
            Layerwise => LayerwiseCounts(frequencies, perLayer * frequencies.Length),
            Concentration => ConcentrationCounts(frequencies, perLayer * frequencies.Length),
            _ => [.. frequencies.Select(_ => perLayer)],
        };
        return [.. frequencies.Select((layer, index) => strategy == Random
            ? RandomChoice(experts, counts[index], seed, index)
            : LeastFrequent(layer, counts[index]))];
    }

    /// <summary>
    /// Splits <paramref name="total"/> pruned experts over layers in proportion to each layer's coefficient of variation,
    /// each layer keeping at least one expert; largest remainders (then lower layer) take the rounding.
    /// </summary>
    public static int[] LayerwiseCounts(double[][] frequencies, int total)
    {
        var layers = frequencies.Length;
        var cap = frequencies[0].Length - 1;
        var spread = frequencies.Select(CoefficientOfVariation).ToArray();
        var counts = new int[layers];
        var open = Enumerable.Range(0, layers).ToList();
        var remaining = total;
        // Water-filling: a layer whose share would exceed the cap is fixed at the cap, and the rest is shared again.
        while (true)
        {
            var weight = open.Sum(l => spread[l]);
            double Share(int l) => weight > 0 ? remaining * spread[l] / weight : (double)remaining / open.Count;
            var capped = open.Where(l => Share(l) >= cap).ToList();
            if (capped.Count == 0)
            {
                var shares = open.ToDictionary(l => l, Share);
                foreach (var l in open) counts[l] = (int)Math.Floor(shares[l]);
                var left = remaining - open.Sum(l => counts[l]);
                foreach (var l in open.OrderByDescending(l => shares[l] - counts[l]).ThenBy(l => l).Take(left)) counts[l]++;
                return counts;
            }
            foreach (var l in capped)
            {
                counts[l] = cap;
                remaining -= cap;
                open.Remove(l);
            }
        }
    }

    /// <summary>
    /// Splits <paramref name="total"/> pruned experts over layers by one bar on every expert's share of its layer's activation
    /// mass: the <paramref name="total"/> lowest shares of the model (ties: lower layer, then lower expert id), at most E−1
    /// per layer (a layer without activations has all shares 0).
    /// </summary>
    public static int[] ConcentrationCounts(double[][] frequencies, int total)
    {
        var cap = frequencies[0].Length - 1;
        var counts = new int[frequencies.Length];
        var byShare = frequencies
            .SelectMany((layer, l) => layer.Select((f, e) => (Layer: l, Expert: e, Share: layer.Sum() is > 0 and var mass ? f / mass : 0.0)))
            .OrderBy(x => x.Share).ThenBy(x => x.Layer).ThenBy(x => x.Expert);
        var left = total;
        foreach (var (layer, _, _) in byShare)
        {
            if (left == 0) break;
            if (counts[layer] == cap) continue;
            counts[layer]++;
            left--;
        }
        return counts;
    }

    public static double CoefficientOfVariation(double[] values)
    {
        var mean = values.Average();
        if (mean <= 0) return 0;
        var variance = values.Sum(v => (v - mean) * (v - mean)) / values.Length;
        return Math.Sqrt(variance) / mean;
    }

    /// <summary>pruned[expert] for the <paramref name="count"/> experts of one layer activated least often (ties: lower expert id first).</summary>
    public static bool[] LeastFrequent(double[] frequencies, int count)
    {
        var pruned = new bool[frequencies.Length];
        foreach (var expert in Enumerable.Range(0, frequencies.Length).OrderBy(e => frequencies[e]).ThenBy(e => e).Take(count)) pruned[expert] = true;
        return pruned;
    }

    // A seeded Fisher–Yates over SplitMix64, so a (seed, layer) names the same experts on every platform and runtime.
    private static bool[] RandomChoice(int experts, int count, long seed, int layer)
    {
        var order = Enumerable.Range(0, experts).ToArray();
        var state = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)layer + 1);
        for (var i = experts - 1; i > 0; i--)
        {
            state = SplitMix64(state);
            var j = (int)(state % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        var pruned = new bool[experts];
        foreach (var expert in order.Take(count)) pruned[expert] = true;
        return pruned;
    }

    private static ulong SplitMix64(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>
    /// Writes the physically pruned checkpoint of <paramref name="modelDirectory"/> (see <see cref="Export"/>) with its
    /// tokenizer and <c>pruning.json</c> into <paramref name="outDirectory"/>, all at once: a reader never sees weights
    /// without their pruning.json. Returns the FFN neurons before and after.
    /// </summary>
    public static (long Before, long After) WritePrunedModel(string modelDirectory, string outDirectory, ExpertPartition partition, ExpertPruningPlan plan)
    {
        Runtime.TorchRuntime.Initialize();
        using var checkpoint = ModelCheckpoint.Load(modelDirectory);
        var (config, tensors) = Export(checkpoint.Config, checkpoint.Tensors, partition, plan);
        AtomicFile.WriteDirectory(outDirectory, temporary =>
        {
            ModelCheckpoint.Save(temporary, config, tensors);
            foreach (var file in new[] { "tokenizer.json" }.Where(f => File.Exists(Path.Combine(modelDirectory, f))))
            {
                File.Copy(Path.Combine(modelDirectory, file), Path.Combine(temporary, file));
            }
            plan.Save(temporary);
        });
        return (checkpoint.Config.IntermediateSize * (long)checkpoint.Config.NumHiddenLayers, config.IntermediateSizes!.Sum());
    }

    /// <summary>
    /// The physically pruned checkpoint: each layer's gate/up rows and down columns of pruned experts' neurons removed
    /// (kept neurons in their original order), per-layer widths in <see cref="ModelConfig.IntermediateSizes"/>.
    /// Its logits equal the masked model's, because a masked neuron contributes exactly zero to down_proj.
    /// </summary>
    public static (ModelConfig Config, Dictionary<string, Tensor> Tensors) Export(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors,
        ExpertPartition partition, ExpertPruningPlan plan)
    {
        if (plan.Layers != partition.Layers || plan.Experts != partition.Experts || partition.Layers != config.NumHiddenLayers)
        {
            throw new UserInputException($"The pruning plan is for {plan.Layers} layers × {plan.Experts} experts but the model's partition has {partition.Layers} × {partition.Experts}.");
        }
        if (config.IntermediateSizes is not null)
        {
            throw new UserInputException("The model is already pruned (its config lists intermediate_sizes); prune the original model instead.");
        }
        var exported = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var widths = new int[config.NumHiddenLayers];
        foreach (var (name, value) in tensors) exported[name] = value;
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            var kept = Enumerable.Range(0, partition.IntermediateSize).Where(n => !plan.Pruned[layer][partition.ExpertOfNeuron[layer][n]]).Select(n => (long)n).ToArray();
            widths[layer] = kept.Length;
            using var index = tensor(kept);
            var prefix = $"model.layers.{layer}.mlp.";
            exported[prefix + "gate_proj.weight"] = tensors[prefix + "gate_proj.weight"].index_select(0, index).contiguous();
            exported[prefix + "up_proj.weight"] = tensors[prefix + "up_proj.weight"].index_select(0, index).contiguous();
            exported[prefix + "down_proj.weight"] = tensors[prefix + "down_proj.weight"].index_select(1, index).contiguous();
        }
        return (config with { IntermediateSizes = widths }, exported);
    }
}
