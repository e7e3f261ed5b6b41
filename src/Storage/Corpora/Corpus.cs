using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Babel.Storage.Corpora;

/// <summary>
/// A corpus folder: <c>corpus.json</c> (<see cref="CorpusManifest"/>) and one <c>LANG.jsonl</c> per language,
/// each line <c>{"id": "...", "text": "..."}</c>. Reading validates as it goes and reports problems as
/// <see cref="UserInputException"/> naming the file and line.
/// </summary>
public sealed partial class Corpus
{
    /// <summary>The extension of each language's document file.</summary>
    public const string DocumentFileExtension = ".jsonl";

    // Strict decoding: a corpus with invalid UTF-8 is reported, never silently repaired with U+FFFD.
    private static readonly UTF8Encoding _strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly HashSet<string> _heldout;

    private Corpus(string directory, CorpusManifest manifest)
    {
        Directory = directory;
        Manifest = manifest;
        _heldout = [.. manifest.Split.Heldout];
    }

    /// <summary>The corpus folder (full path).</summary>
    public string Directory { get; }

    /// <summary>The contents of <c>corpus.json</c>.</summary>
    public CorpusManifest Manifest { get; }

    /// <summary>Opens the corpus in <paramref name="directory"/> and validates its <c>corpus.json</c>.</summary>
    public static Corpus Open(string directory)
    {
        var full = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(full))
        {
            throw new UserInputException($"corpus folder '{full}' does not exist; pass a folder written by 'babel data udhr --out DIR'.");
        }
        var manifestPath = Path.Combine(full, CorpusManifest.FileName);
        if (!File.Exists(manifestPath))
        {
            throw new UserInputException($"'{full}' has no {CorpusManifest.FileName}, so it is not a corpus folder; pass a folder written by 'babel data udhr --out DIR'.");
        }
        var manifest = ReadManifest(manifestPath);
        return new Corpus(full, manifest);
    }

    /// <summary>True when <paramref name="code"/> is shaped like an ISO 639-3 code: three lowercase ASCII letters.</summary>
    public static bool IsLanguageCode(string? code) => code is not null && LanguageCodePattern().IsMatch(code);

    /// <summary>Throws a <see cref="UserInputException"/> unless <paramref name="code"/> is shaped like an ISO 639-3 code.</summary>
    public static void RequireLanguageCode(string? code)
    {
        if (!IsLanguageCode(code))
        {
            throw new UserInputException($"'{code}' is not an ISO 639-3 language code; use three lowercase letters such as 'eng' or 'cmn'.");
        }
    }

    /// <summary>True when <paramref name="id"/> is held out in this corpus.</summary>
    public bool IsHeldout(string id) => _heldout.Contains(id);

    /// <summary>
    /// Reads the documents of <paramref name="language"/> in <paramref name="split"/>, in file order.
    /// Lazy: a bad line is reported when it is reached.
    /// </summary>
    public IEnumerable<CorpusDocument> ReadDocuments(string language, CorpusSplit split = CorpusSplit.All)
    {
        RequireLanguageCode(language);
        if (Manifest.FindLanguage(language) is null)
        {
            throw new UserInputException(
                $"unknown language '{language}'; this corpus has: {string.Join(", ", Manifest.Languages.Select(l => l.Code))}.");
        }
        var path = Path.Combine(Directory, language + DocumentFileExtension);
        if (!File.Exists(path))
        {
            throw new UserInputException($"corpus '{Directory}' lists '{language}' but has no {language}{DocumentFileExtension}; write the corpus again.");
        }
        return ReadDocumentFile(path, split);
    }

    private IEnumerable<CorpusDocument> ReadDocumentFile(string path, CorpusSplit split)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (number, line) in ReadLines(path))
        {
            var document = ParseLine(path, number, line);
            if (document is null)
            {
                continue;
            }
            if (!seen.Add(document.Id))
            {
                throw new UserInputException($"{path} line {number} repeats document id '{document.Id}'; give every document its own id.");
            }
            var wanted = split switch
            {
                CorpusSplit.All => true,
                CorpusSplit.Heldout => _heldout.Contains(document.Id),
                _ => !_heldout.Contains(document.Id),
            };
            if (wanted)
            {
                yield return document;
            }
        }
    }

    private static CorpusDocument? ParseLine(string path, int number, byte[] line)
    {
        string text;
        try
        {
            text = _strictUtf8.GetString(line);
        }
        catch (DecoderFallbackException exception)
        {
            throw new UserInputException($"{path} line {number} is not valid UTF-8; re-encode the file as UTF-8.", exception);
        }
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        JsonDocument json;
        try
        {
            json = JsonDocument.Parse(text);
        }
        catch (JsonException exception)
        {
            throw new UserInputException($"{path} line {number} is not valid JSON ({exception.Message}); each line must be {{\"id\": \"...\", \"text\": \"...\"}}.", exception);
        }
        using (json)
        {
            var root = json.RootElement;
            var id = StringProperty(root, "id");
            var body = StringProperty(root, "text");
            if (string.IsNullOrEmpty(id) || body is null)
            {
                var missing = string.IsNullOrEmpty(id) ? "id" : "text";
                throw new UserInputException($"{path} line {number} lacks a string \"{missing}\"; each line must be {{\"id\": \"...\", \"text\": \"...\"}}.");
            }
            return new CorpusDocument(id, body);
        }
    }

    private static string? StringProperty(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object
        && element.TryGetProperty(name, out var value)
        && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    /// <summary>Splits a file into lines as raw bytes, so a decoding error can name its line.</summary>
    private static IEnumerable<(int Number, byte[] Bytes)> ReadLines(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buffer = new byte[1 << 16];
        var pending = new MemoryStream();
        var number = 0;
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            var start = 0;
            for (var i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)'\n')
                {
                    continue;
                }
                pending.Write(buffer, start, i - start);
                yield return (++number, LineBytes(pending, number));
                pending.SetLength(0);
                start = i + 1;
            }
            pending.Write(buffer, start, read - start);
        }
        if (pending.Length > 0)
        {
            yield return (++number, LineBytes(pending, number));
        }
    }

    private static byte[] LineBytes(MemoryStream pending, int number)
    {
        ReadOnlySpan<byte> bytes = pending.GetBuffer().AsSpan(0, (int)pending.Length);
        if (number == 1 && bytes.StartsWith(Encoding.UTF8.Preamble))
        {
            bytes = bytes[Encoding.UTF8.Preamble.Length..];
        }
        if (bytes.Length > 0 && bytes[^1] == (byte)'\r')
        {
            bytes = bytes[..^1];
        }
        return bytes.ToArray();
    }

    private static CorpusManifest ReadManifest(string path) => ParseManifest(File.ReadAllBytes(path), path);

    /// <summary>
    /// A corpus's <c>corpus.json</c> from its bytes (e.g. read from the artifact store without the corpus's documents),
    /// validated as <see cref="Open"/> validates it; <paramref name="path"/> names it in errors.
    /// </summary>
    public static CorpusManifest ParseManifest(byte[] bytes, string path)
    {
        string json;
        try
        {
            json = _strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException exception)
        {
            throw new UserInputException($"{path} is not valid UTF-8; re-encode it as UTF-8 or write the corpus again.", exception);
        }
        CorpusManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CorpusManifest>(json, CorpusManifest.ReadOptions);
        }
        catch (JsonException exception)
        {
            throw new UserInputException($"{path} is not a valid corpus manifest ({exception.Message}); fix it or write the corpus again.", exception);
        }
        if (manifest is null)
        {
            throw new UserInputException($"{path} is empty (null); write the corpus again.");
        }
        foreach (var language in manifest.Languages)
        {
            if (!IsLanguageCode(language.Code))
            {
                throw new UserInputException($"{path} lists language '{language.Code}', which is not an ISO 639-3 code; use three lowercase letters such as 'eng'.");
            }
        }
        var duplicate = manifest.Languages.GroupBy(l => l.Code).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new UserInputException($"{path} lists language '{duplicate.Key}' twice; list each language once.");
        }
        return manifest;
    }

    [GeneratedRegex("^[a-z]{3}$")]
    private static partial Regex LanguageCodePattern();
}
