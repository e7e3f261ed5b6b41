using System.Text;
using System.Text.Json;

namespace Babel.Storage.Corpora;

/// <summary>One translation instruction: "Translate into French: (English text)" → the French text, with where it came from.</summary>
public sealed record TranslationInstruction(string Id, string Instruction, string Response);

/// <summary>
/// Translation instructions from an aligned corpus (documents with the same id are translations, as in the UDHR
/// corpus): for every train document, the source language's text is the prompt and the target language's text the
/// response. Where both texts have the same number of lines (paragraphs), each line pair is its own instruction, which
/// keeps examples short; otherwise the whole document is one. Held-out documents are never used.
/// </summary>
public static class TranslationInstructions
{
    /// <summary>The prompt template; {0} is the target language's English name, {1} the source text.</summary>
    public const string Template = "Translate into {0}: {1}";

    // One object per line, text readable in every script (not \uXXXX escapes).
    private static readonly JsonSerializerOptions _lineOptions = new(CorpusManifest.JsonOptions) { WriteIndented = false };

    public static IReadOnlyList<TranslationInstruction> Build(Corpus corpus, string source, IReadOnlyList<string> targets)
    {
        var sourceDocuments = corpus.ReadDocuments(source, CorpusSplit.Train).ToDictionary(d => d.Id, d => d.Text, StringComparer.Ordinal);
        var instructions = new List<TranslationInstruction>();
        foreach (var target in targets)
        {
            if (target == source) throw new UserInputException($"the target language '{target}' is the source language; leave it out of --languages or choose another --source.");
            var name = corpus.Manifest.FindLanguage(target)?.Name ?? target;
            foreach (var document in corpus.ReadDocuments(target, CorpusSplit.Train))
            {
                if (!sourceDocuments.TryGetValue(document.Id, out var sourceText)) continue;
                var sourceLines = sourceText.Split('\n');
                var targetLines = document.Text.Split('\n');
                if (sourceLines.Length == targetLines.Length)
                {
                    for (var i = 0; i < sourceLines.Length; i++)
                    {
                        instructions.Add(new TranslationInstruction($"{document.Id}/{target}/{i + 1}", string.Format(System.Globalization.CultureInfo.InvariantCulture, Template, name, sourceLines[i]), targetLines[i]));
                    }
                }
                else
                {
                    instructions.Add(new TranslationInstruction($"{document.Id}/{target}", string.Format(System.Globalization.CultureInfo.InvariantCulture, Template, name, sourceText), document.Text));
                }
            }
        }
        return instructions;
    }

    /// <summary>Writes one JSON object per line (<c>id</c>, <c>instruction</c>, <c>response</c>), atomically.</summary>
    public static void Write(string path, IEnumerable<TranslationInstruction> instructions)
    {
        var text = new StringBuilder();
        foreach (var instruction in instructions)
        {
            text.Append(JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["id"] = instruction.Id,
                ["instruction"] = instruction.Instruction,
                ["response"] = instruction.Response,
            }, _lineOptions)).Append('\n');
        }
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(path, text.ToString());
    }
}
