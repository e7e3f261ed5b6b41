using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Training;

/// <summary>Per-language perplexity of a model on a corpus split, as <c>babel perplexity</c> reports it and writes to <c>perplexity.json</c>.</summary>
public sealed record PerplexityReport(string Model, string Split, IReadOnlyList<PerplexityResult> Languages)
{
    public const string FileName = "perplexity.json";

    /// <summary><c>{"model":…,"split":…,"languages":{"eng":{"documents":…,"tokens":…,"bytes":…,"mean_nll":…,"perplexity":…,"bits_per_byte":…}}}</c></summary>
    public string ToJson()
    {
        var languages = new JsonObject();
        foreach (var r in Languages)
        {
            languages[r.Language] = new JsonObject
            {
                ["documents"] = r.Documents, ["tokens"] = r.Tokens, ["bytes"] = r.Bytes,
                ["mean_nll"] = Finite(r.MeanNll), ["perplexity"] = Finite(r.Perplexity), ["bits_per_byte"] = Finite(r.BitsPerByte),
            };
        }
        return new JsonObject { ["model"] = Model, ["split"] = Split, ["languages"] = languages }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>A language without tokens has no perplexity: null, since JSON has no NaN.</summary>
    private static JsonNode? Finite(double value) => double.IsFinite(value) ? JsonValue.Create(value) : null;

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, FileName), ToJson() + "\n");
    }
}
