using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Babel.Storage.Corpora;

/// <summary>
/// <c>corpus.json</c>: what a corpus folder holds, where it came from, under which licence,
/// and which document ids are held out. Serialised in camelCase.
/// </summary>
public sealed record CorpusManifest(
    string Name,
    string Source,
    string Licence,
    IReadOnlyList<CorpusLanguage> Languages,
    CorpusSplitManifest Split)
{
    /// <summary>The file name of the manifest inside a corpus folder.</summary>
    public const string FileName = "corpus.json";

    /// <summary>Serializer settings for every corpus file: camelCase names, readable non-ASCII text.</summary>
    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        // Corpus text is meant to be read by people in every script, not as \uXXXX escapes.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Reading is strict: a missing or null field is an error, not a silent null.</summary>
    internal static readonly JsonSerializerOptions ReadOptions = new(JsonOptions)
    {
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>The manifest entry of <paramref name="code"/>, or null when the corpus does not hold it.</summary>
    public CorpusLanguage? FindLanguage(string code) => Languages.FirstOrDefault(l => l.Code == code);
}

/// <summary>One language of a corpus: ISO 639-3 code, English name, ISO 15924 script name, family, and its own source and licence.</summary>
public sealed record CorpusLanguage(string Code, string Name, string Script, string Family, string Source, string Licence);

/// <summary>
/// The deterministic train / held-out split: <see cref="Heldout"/> lists the held-out document ids
/// (the same ids in every language); every other document is train. <see cref="Rule"/> says why in words.
/// </summary>
public sealed record CorpusSplitManifest(IReadOnlyList<string> Heldout, string Rule);
