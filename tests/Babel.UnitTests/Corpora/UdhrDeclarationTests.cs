using System.Text;
using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Corpora;

public class UdhrDeclarationTests
{
    private static string Declaration(int articles, string firstArticleBody = "<p>First.</p>")
    {
        var html = new StringBuilder("<!doctype html><html data-iso6393=\"tst\"><body><h1>UDHR</h1><header><h2>Preamble</h2><p>Whereas\n   we   agree,</p><p>Now.</p></header>");
        for (var n = 1; n <= articles; n++)
        {
            html.Append($"<article data-number=\"{n}\"><h2>Article {n}</h2>{(n == 1 ? firstArticleBody : $"<p>Text {n}.</p>")}</article>");
        }
        return html.Append("</body></html>").ToString();
    }

    [Fact]
    public void Parse_yields_preamble_then_30_articles_without_headings()
    {
        var documents = UdhrDeclaration.Parse(Declaration(30), "test.html");

        Assert.Equal(UdhrDeclaration.DocumentIds, documents.Select(d => d.Id));
        Assert.Equal(31, documents.Count);
        Assert.Equal("Whereas we agree,\nNow.", documents[0].Text);
        Assert.Equal("First.", documents[1].Text);
        Assert.Equal("article-30", documents[30].Id);
        Assert.Equal("Text 30.", documents[30].Text);
        Assert.DoesNotContain(documents, d => d.Text.Contains("Article", StringComparison.Ordinal));
    }

    [Fact]
    public void Parse_reports_a_missing_article_with_file_and_number()
    {
        var error = Assert.Throws<UserInputException>(() => UdhrDeclaration.Parse(Declaration(29), "declaration/xyz.html"));
        Assert.Contains("declaration/xyz.html", error.Message);
        Assert.Contains("lacks article 30", error.Message);
    }

    [Fact]
    public void Parse_reports_a_missing_preamble()
    {
        var html = Declaration(30).Replace("<header>", "<div>", StringComparison.Ordinal).Replace("</header>", "</div>", StringComparison.Ordinal);
        var error = Assert.Throws<UserInputException>(() => UdhrDeclaration.Parse(html, "declaration/amh.html"));
        Assert.Contains("declaration/amh.html has no preamble", error.Message);
    }

    [Fact]
    public void Parse_reports_an_empty_article()
    {
        var error = Assert.Throws<UserInputException>(() => UdhrDeclaration.Parse(Declaration(30, "<p> </p>"), "e.html"));
        Assert.Contains("no text for article-01", error.Message);
    }

    [Fact]
    public void Text_is_entity_decoded_list_items_are_lines_and_result_is_NFC()
    {
        // "e" + combining acute (U+0301) must come out as the single code point U+00E9.
        var documents = UdhrDeclaration.Parse(Declaration(30, "<ol><li>Tom &amp; Jerry\t&lt;ok&gt;</li><li>caf&#x65;&#x301;\u00a0!</li></ol>"), "t.html");

        Assert.Equal("Tom & Jerry <ok>\ncaf\u00e9\u00a0!", documents[1].Text);
        Assert.True(documents[1].Text.IsNormalized(NormalizationForm.FormC));
    }

    [Fact]
    public void Stated_language_is_read_from_the_root_element()
    {
        Assert.Equal("tst", UdhrDeclaration.StatedLanguage(Declaration(1)));
        Assert.Null(UdhrDeclaration.StatedLanguage("<html lang=\"en\">"));
    }
}
