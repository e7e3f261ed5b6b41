using System.Text.Json.Nodes;

namespace Babel.Modeling.Analysis;

/// <summary>What analyses need from a profile run's <c>manifest.json</c>; every field is optional (a run may lack the file).</summary>
public sealed record RunManifest(string? CorpusName, string? ModelFolder, string? Partition, string? Split, string? CorpusFolder = null)
{
    public const string FileName = "manifest.json";

    public static RunManifest Read(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path)) return new RunManifest(null, null, null, null);
        JsonObject? json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new Storage.UserInputException($"{path} is not valid JSON ({e.Message}); run 'babel profile' again to rewrite it.", e);
        }
        if (json is null) return new RunManifest(null, null, null, null);
        // The partition identity is (method, seed, experts): an instruction-tuned copy keeps its base's experts.json.
        var partition = json["partition"] is JsonObject p ? p.ToJsonString() : null;
        return new RunManifest(Text(json["corpus_name"]), Text(json["model_folder"]), partition, Text(json["split"]), Text(json["corpus_folder"]));
    }

    private static string? Text(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;
}
