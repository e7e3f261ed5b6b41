using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>One language's exact counts: how many tokens were profiled and, per layer and expert, how many of them activated it.</summary>
public sealed record LanguageActivations(long Tokens, long[][] Counts)
{
    /// <summary>frequency[layer][expert] = counts / tokens.</summary>
    public double[][] Frequencies() => [.. Counts.Select(layer => layer.Select(c => Tokens == 0 ? 0.0 : (double)c / Tokens).ToArray())];
}

/// <summary>
/// <c>activations.json</c> (ARCHITECTURE.md): per language, the token count and the activation count of every expert in
/// every layer under one activation rule. Written with languages in ordinal order, so equal counts give equal bytes.
/// </summary>
public sealed record ActivationProfile(string Model, int Layers, int Experts, string Rule, IReadOnlyDictionary<string, LanguageActivations> Languages)
{
    public const string FileName = "activations.json";

    public string ToJson()
    {
        var languages = new JsonObject();
        foreach (var (code, activations) in Languages.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            languages[code] = new JsonObject
            {
                ["tokens"] = activations.Tokens,
                ["counts"] = new JsonArray([.. activations.Counts.Select(layer => (JsonNode)new JsonArray([.. layer.Select(c => (JsonNode)c)]))]),
            };
        }
        var json = new JsonObject
        {
            ["model"] = Model,
            ["layers"] = Layers,
            ["experts"] = Experts,
            ["rule"] = Rule,
            ["languages"] = languages,
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = false }) + "\n";
    }

    public void Save(string runDirectory) => AtomicFile.WriteAllText(Path.Combine(runDirectory, FileName), ToJson());

    public static ActivationProfile Load(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; pass a run folder written by 'babel profile'.");
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            var layers = json["layers"]!.GetValue<int>();
            var experts = json["experts"]!.GetValue<int>();
            var languages = new SortedDictionary<string, LanguageActivations>(StringComparer.Ordinal);
            foreach (var (code, node) in json["languages"]!.AsObject())
            {
                var counts = node!["counts"]!.AsArray().Select(layer => layer!.AsArray().Select(c => c!.GetValue<long>()).ToArray()).ToArray();
                if (counts.Length != layers || counts.Any(l => l.Length != experts))
                {
                    throw new UserInputException($"{path}: language '{code}' has counts of another shape than {layers} layers × {experts} experts.");
                }
                languages[code] = new LanguageActivations(node["tokens"]!.GetValue<long>(), counts);
            }
            return new ActivationProfile(json["model"]!.GetValue<string>(), layers, experts, json["rule"]!.GetValue<string>(), languages);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException)
        {
            throw new UserInputException($"{path} is not a valid activations.json ({e.Message}).", e);
        }
    }
}
