using System.Globalization;

namespace Babel.Storage.Icpc;

/// <summary>
/// The German ICPC-2 thesaurus as a <see cref="CodedTextDataset"/>: 58,941 clinical terms, each labelled with one
/// of 1,366 ICPC-2 codes; labels carry the English ICPC-2 titles and the path chapter → component → code.
/// </summary>
public static class IcpcDataset
{
    public const string Name = "icpc2-de-thesaurus";

    /// <summary>The data's licence as GNUmed states it inside the SQL (the Debian copyright file covers the code: GPL-2+).</summary>
    public const string Licence =
        "ICPC-2 data shipped with GNUmed: NON-COMMERCIAL USE ONLY; commercial use requires a licence from WONCA. "
        + "GNUmed's scripts: GPL-2+ (Debian copyright file of gnumed-server).";

    /// <summary>The marker in the codes script that states the data licence; checked so a changed licence is noticed.</summary>
    public const string LicenceMarker = "NON-COMMERCIAL USE ONLY";

    /// <summary>Builds records and labels from the package (no files written), optionally only of some chapters (letters).</summary>
    public static (IReadOnlyList<CodedText> Records, LabelSet Labels) Build(GnumedServerPackage package, IReadOnlyCollection<string>? chapters = null)
    {
        if (!package.CodesSql.Contains(LicenceMarker, StringComparison.Ordinal))
        {
            throw new UserInputException($"{GnumedServerPackage.CodesPath} in {package.DebPath} no longer states '{LicenceMarker}'; review the data's licence before using this package version.");
        }
        // Ids number the terms of the whole thesaurus, so a chapter subset keeps the ids (and split) of the full dataset.
        var terms = IcpcThesaurus.ParseTerms(package.ThesaurusSql).Select((t, i) => (t.Text, t.Code, Number: i + 1)).ToList();
        if (chapters is { Count: > 0 })
        {
            var unknown = chapters.Where(c => !terms.Any(t => t.Code.StartsWith(c, StringComparison.Ordinal))).ToList();
            if (unknown.Count > 0 || chapters.Any(c => c.Length != 1))
            {
                throw new UserInputException($"--chapters takes ICPC-2 chapter letters (A, B, D, F, H, K, L, N, P, R, S, T, U, W, X, Y, Z); '{string.Join(",", chapters)}' is not a list of them.");
            }
            terms = [.. terms.Where(t => chapters.Contains(t.Code[..1]))];
        }
        var titles = IcpcThesaurus.ParseCodes(package.CodesSql).GroupBy(c => c.Code, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Title, StringComparer.Ordinal);
        var used = terms.Select(t => t.Code).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var chapterRows = IcpcThesaurus.ParseChapters(package.CodesSql).Where(c => used.Any(u => u.StartsWith(c.Code, StringComparison.Ordinal)));
        var labels = used.Select(code => new LabelEntry(code, titles.GetValueOrDefault(code, code), LabelSchemes.PathOf(LabelSchemes.Icpc2, code))).ToList();
        var nodes = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var chapter in chapterRows) nodes[chapter.Code] = chapter.Title;
        foreach (var code in used)
        {
            nodes[LabelSchemes.ComponentNode(code)] = IcpcThesaurus.ComponentNames[IcpcThesaurus.Component(code) - 1];
        }
        var records = terms.Select(t => new CodedText(string.Create(CultureInfo.InvariantCulture, $"icpc-{t.Number:D5}"), t.Text, [t.Code])).ToList();
        return (records, new LabelSet(LabelSchemes.Icpc2, labels, nodes));
    }

    /// <summary>
    /// Writes the dataset folder (replaced atomically) from <paramref name="package"/>; with <paramref name="minExamples"/>
    /// only the terms of codes with at least that many terms (the tree keeps every code and node; <c>dataset.json</c> lists
    /// what was dropped).
    /// </summary>
    public static CodedTextDataset Write(string directory, GnumedServerPackage package, IReadOnlyCollection<string>? chapters = null, int? minExamples = null)
    {
        if (minExamples <= 0) throw new UserInputException($"--min-examples must be a positive number of terms per code (got {minExamples}); 1 keeps every code.");
        var (records, labels) = Build(package, chapters);
        MinExamplesFilter? filter = null;
        if (minExamples is { } minimum) (records, filter) = MinExamplesFilter.Apply(records, minimum);
        var source = $"Debian gnumed-server {GnumedServerPackage.Version}: {GnumedServerPackage.ThesaurusPath}, {GnumedServerPackage.CodesPath}"
            + (chapters is { Count: > 0 } ? $" (chapters {string.Join(",", chapters)} only)" : "")
            + (filter is null ? "" : string.Create(CultureInfo.InvariantCulture, $" (terms of codes with at least {filter.MinExamples} terms only)"));
        return CodedTextDataset.Write(directory, Name, source, Licence, records, labels, filter);
    }
}
