using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Modeling.Analysis;

/// <summary>
/// The known family of each language: from a corpus's <c>corpus.json</c> when given, else from
/// <see cref="LanguageCatalog"/>. At level <see cref="Family"/> the top family ("Indo-European"), at level
/// <see cref="Branch"/> family and branch ("Indo-European / Romance"). Unknown languages get null and are left out of
/// the family score (and are listed as such).
/// </summary>
public static class LanguageFamilies
{
    public const string Family = "family";
    public const string Branch = "branch";
    public static IReadOnlyList<string> Levels { get; } = [Family, Branch];

    public static string?[] Resolve(IReadOnlyList<string> languages, string level, string? corpusDirectory)
    {
        if (!Levels.Contains(level)) throw new UserInputException($"--family-level '{level}' is not one of: {string.Join(", ", Levels)}.");
        var corpus = corpusDirectory is null ? null : Corpus.Open(corpusDirectory);
        return [.. languages.Select(code =>
        {
            // UDHR corpora store "Family / Branch"; the catalog stores both apart.
            var full = corpus is not null
                ? corpus.Manifest.FindLanguage(code)?.Family
                : LanguageCatalog.Find(code) is { } entry ? $"{entry.Family} / {entry.Branch}" : null;
            if (string.IsNullOrWhiteSpace(full)) return null;
            return level == Branch ? full.Trim() : full.Split('/', 2)[0].Trim();
        })];
    }
}
