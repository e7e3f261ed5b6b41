using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Babel.Contracts;
using Babel.Storage;
using Babel.Storage.Artifacts;
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
    /// A spec for <paramref name="json"/>: inline up to <see cref="JobSpec.InlineParametersLimit"/> bytes, otherwise stored
    /// once (content-addressed) in <paramref name="store"/> and named by reference.
    /// </summary>
    public static async Task<JobSpec> SpecAsync(string kind, string json, int maxAttempts, TimeSpan leaseDuration, JobOrigin origin, IArtifactStore store, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        if (bytes.Length <= JobSpec.InlineParametersLimit) return new JobSpec(kind, json, maxAttempts, leaseDuration, origin);
        var key = $"jobs/parameters/{Convert.ToHexStringLower(SHA256.HashData(bytes))}.json";
        if (!await store.ExistsAsync(key, cancellationToken)) await store.PutBytesAsync(key, bytes, cancellationToken);
        return new JobSpec(kind, "", maxAttempts, leaseDuration, origin, key);
    }

    /// <summary>
    /// <paramref name="spec"/> with its parameters inline, read from the artifact store when they travel by reference; a
    /// missing or altered parameters object (its SHA-256 is in its key) is one sentence.
    /// </summary>
    public static async Task<JobSpec> InlineAsync(JobSpec spec, IArtifactStore store, CancellationToken cancellationToken)
    {
        if (spec.ParametersArtifact is not { } key) return spec;
        var bytes = await store.GetBytesAsync(key, cancellationToken)
            ?? throw new UserInputException($"The {spec.Kind} job's parameters ({key}) are missing from the artifact store.");
        if (!key.EndsWith($"/{Convert.ToHexStringLower(SHA256.HashData(bytes))}.json", StringComparison.Ordinal))
            throw new UserInputException($"The {spec.Kind} job's parameters ({key}) in the artifact store do not match their SHA-256; they were altered after submission.");
        return spec with { Parameters = Encoding.UTF8.GetString(bytes), ParametersArtifact = null };
    }

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
