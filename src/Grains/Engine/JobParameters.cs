using System.Text.Json;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.Engine;

/// <summary>The JSON every job kind's parameters and shard slices travel in, and the parsing they share.</summary>
public static class JobParameters
{
    private static readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.Web);

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, _json);

    public static byte[] SerializeToUtf8Bytes<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, _json);

    /// <summary>Reads <paramref name="json"/> as <typeparamref name="T"/>; bad JSON is one sentence naming the job kind.</summary>
    public static T Deserialize<T>(string json, string kind)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, _json) ?? throw new UserInputException($"The {kind} job parameters are empty.");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"The {kind} job parameters are not valid JSON ({e.Message}).", e);
        }
    }

    public static T Deserialize<T>(ReadOnlySpan<byte> json) => JsonSerializer.Deserialize<T>(json, _json)!;

    /// <summary>
    /// The job's languages: at least one, each a plain code (it names shards and result files), none twice; otherwise one
    /// sentence naming the job kind.
    /// </summary>
    public static void Languages(IReadOnlyList<string>? languages, string kind)
    {
        if (languages is null || languages.Count == 0) throw new UserInputException($"The {kind} job names no language.");
        foreach (var language in languages)
        {
            if (!JobIds.IsValid(language)) throw new UserInputException($"The {kind} job names the language '{language}', which is not a language code.");
        }
        if (languages.GroupBy(l => l, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new UserInputException($"The {kind} job names the language '{twice.Key}' twice.");
        }
    }

    /// <summary><c>all</c>, <c>train</c> or <c>heldout</c>.</summary>
    public static CorpusSplit Split(string split) => split switch
    {
        "heldout" => CorpusSplit.Heldout,
        "train" => CorpusSplit.Train,
        "all" => CorpusSplit.All,
        _ => throw new UserInputException($"Unknown split '{split}'; use all, train or heldout."),
    };
}
