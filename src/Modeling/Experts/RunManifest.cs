using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>Which expert partition a run profiled: an instruction-tuned copy keeps its base's experts.json, so (method, seed, experts) identifies it.</summary>
public sealed record PartitionIdentity(string Method, long Seed, int Experts)
{
    public static PartitionIdentity Of(ExpertPartition partition) => new(partition.Method, partition.Seed, partition.Experts);

    /// <summary>Compact JSON, as the manifest holds it: <c>{"method":"random","seed":3,"experts":4}</c>.</summary>
    public override string ToString() => JsonSerializer.Serialize(this, RunManifest.Compact);
}

/// <summary>The software that wrote a run.</summary>
public sealed record RunVersions(
    [property: JsonPropertyName("babel")] string? Babel,
    [property: JsonPropertyName("torchsharp")] string? TorchSharp,
    [property: JsonPropertyName("dotnet")] string? DotNet)
{
    /// <summary>The versions of this process.</summary>
    public static RunVersions Current() => new(typeof(RunVersions).Assembly.GetName().Version?.ToString(),
        typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(), Environment.Version.ToString());
}

/// <summary>
/// A profile run's <c>manifest.json</c>: where its model and corpus came from, how it was profiled, and how long it took.
/// Every field is optional when read: a run may lack the file, and hand-written runs hold only some fields.
/// </summary>
public sealed record RunManifest
{
    public const string FileName = "manifest.json";

    /// <summary>The manifest fields <c>report.html</c> shows, in this order.</summary>
    private static readonly string[] _reportFields = ["model_folder", "corpus_name", "rule", "split", "tokens", "wall_seconds", "tokens_per_second"];

    private static readonly JsonSerializerOptions _json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    internal static readonly JsonSerializerOptions Compact = new(_json) { WriteIndented = false };

    public static RunManifest Empty { get; } = new();

    /// <summary>The profile job that wrote the run.</summary>
    public string? Job { get; init; }
    /// <summary>Artifact key of the model folder.</summary>
    public string? Model { get; init; }
    /// <summary>The local folder the model was uploaded from.</summary>
    public string? ModelFolder { get; init; }
    /// <summary>Artifact key of the corpus folder.</summary>
    public string? Corpus { get; init; }
    public string? CorpusName { get; init; }
    /// <summary>The local folder the corpus was uploaded from.</summary>
    public string? CorpusFolder { get; init; }
    public PartitionIdentity? Partition { get; init; }
    public string? Rule { get; init; }
    public string? Split { get; init; }
    public bool? CountBos { get; init; }
    public int? ShardTokens { get; init; }
    public int? SequenceLength { get; init; }
    public IReadOnlyList<string>? Languages { get; init; }
    public long? Tokens { get; init; }
    public int? Shards { get; init; }
    public RunVersions? Versions { get; init; }
    /// <summary>The job's wall time, from submission to its end.</summary>
    public double? WallSeconds { get; init; }
    public double? TokensPerSecond { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, _json) + "\n";

    public void Save(string runDirectory) => AtomicFile.WriteAllText(Path.Combine(runDirectory, FileName), ToJson());

    /// <summary>The manifest of <paramref name="runDirectory"/>, <see cref="Empty"/> when it has none; a corrupt file is one sentence.</summary>
    public static RunManifest Read(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path)) return Empty;
        try
        {
            return JsonSerializer.Deserialize<RunManifest>(File.ReadAllText(path), _json) ?? Empty;
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not a valid run manifest ({e.Message}); run 'babel profile' again to rewrite it.", e);
        }
    }

    /// <summary>The fields <c>report.html</c> shows, as they read in the JSON (strings without their quotes).</summary>
    public IReadOnlyDictionary<string, string> ReportFields()
    {
        var json = JsonSerializer.SerializeToNode(this, _json)!.AsObject();
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in _reportFields)
        {
            if (json[key] is JsonNode value) fields[key] = value.ToJsonString().Trim('"');
        }
        return fields;
    }
}
