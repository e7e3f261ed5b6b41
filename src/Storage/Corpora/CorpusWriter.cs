using System.Text.Json;

namespace Babel.Storage.Corpora;

/// <summary>Writes a corpus folder in one piece: it appears complete under its name or not at all.</summary>
public static class CorpusWriter
{
    /// <summary>
    /// Writes <paramref name="manifest"/> and, for each of its languages, the documents in
    /// <paramref name="documents"/> to <paramref name="directory"/>, replacing an existing corpus there.
    /// </summary>
    public static void Write(string directory, CorpusManifest manifest, IReadOnlyDictionary<string, IReadOnlyList<CorpusDocument>> documents)
    {
        Validate(manifest, documents);
        RefuseToReplaceOtherFolders(directory);
        AtomicFile.WriteDirectory(directory, temporary =>
        {
            File.WriteAllText(Path.Combine(temporary, CorpusManifest.FileName),
                JsonSerializer.Serialize(manifest, CorpusManifest.JsonOptions) + "\n");
            foreach (var language in manifest.Languages)
            {
                WriteDocuments(Path.Combine(temporary, language.Code + Corpus.DocumentFileExtension), documents[language.Code]);
            }
        });
    }

    private static void WriteDocuments(string path, IReadOnlyList<CorpusDocument> documents)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        var lineOptions = new JsonWriterOptions { Encoder = CorpusManifest.JsonOptions.Encoder, Indented = false };
        foreach (var document in documents)
        {
            using (var writer = new Utf8JsonWriter(stream, lineOptions))
            {
                writer.WriteStartObject();
                writer.WriteString("id", document.Id);
                writer.WriteString("text", document.Text);
                writer.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
        }
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Replacing is whole-folder, so only an earlier corpus (or an empty folder) may be replaced.</summary>
    private static void RefuseToReplaceOtherFolders(string directory)
    {
        var full = Path.GetFullPath(directory);
        if (Directory.Exists(full)
            && !File.Exists(Path.Combine(full, CorpusManifest.FileName))
            && Directory.EnumerateFileSystemEntries(full).Any())
        {
            throw new UserInputException($"'{full}' exists and is not a corpus folder, so it will not be replaced; choose a new or empty folder.");
        }
    }

    private static void Validate(CorpusManifest manifest, IReadOnlyDictionary<string, IReadOnlyList<CorpusDocument>> documents)
    {
        foreach (var language in manifest.Languages)
        {
            Corpus.RequireLanguageCode(language.Code);
            if (!documents.TryGetValue(language.Code, out var list))
            {
                throw new ArgumentException($"the manifest lists '{language.Code}' but no documents were given for it.", nameof(documents));
            }
            var duplicate = list.GroupBy(d => d.Id, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null)
            {
                throw new ArgumentException($"language '{language.Code}' has document id '{duplicate.Key}' twice.", nameof(documents));
            }
        }
        var unlisted = documents.Keys.Except(manifest.Languages.Select(l => l.Code)).FirstOrDefault();
        if (unlisted is not null)
        {
            throw new ArgumentException($"documents were given for '{unlisted}', which the manifest does not list.", nameof(documents));
        }
    }
}
