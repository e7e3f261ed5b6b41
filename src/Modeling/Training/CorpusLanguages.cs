using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Modeling.Training;

/// <summary>The <c>--languages</c> of a corpus command: every language of the corpus, or the listed ones, each known to it.</summary>
public static class CorpusLanguages
{
    /// <summary>
    /// The codes in <paramref name="languages"/> (comma-separated, each once), or every language of <paramref name="corpus"/>
    /// when it is empty; an unknown code is one sentence naming the corpus's languages.
    /// </summary>
    public static IReadOnlyList<string> Select(Corpus corpus, string? languages)
    {
        if (string.IsNullOrWhiteSpace(languages)) return [.. corpus.Manifest.Languages.Select(l => l.Code)];
        var codes = languages.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal).ToList();
        foreach (var code in codes)
        {
            Corpus.RequireLanguageCode(code);
            if (corpus.Manifest.FindLanguage(code) is null)
            {
                throw new UserInputException($"unknown language '{code}'; this corpus has: {string.Join(", ", corpus.Manifest.Languages.Select(l => l.Code))}.");
            }
        }
        return codes;
    }
}
