using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Corpora;

public class LanguageCatalogTests
{
    [Fact]
    public void Default_contains_the_papers_nine_languages()
    {
        var codes = LanguageCatalog.Default.Select(l => l.Code).ToHashSet();
        Assert.Equal(9, LanguageCatalog.PaperLanguages.Count);
        foreach (var code in new[] { "eng", "fra", "spa", "por", "ben", "urd", "hin", "arb", "cmn" })
        {
            Assert.Contains(code, codes);
            Assert.Contains(code, LanguageCatalog.PaperLanguages);
        }
    }

    [Fact]
    public void Default_spans_at_least_20_languages_8_families_and_8_scripts()
    {
        Assert.True(LanguageCatalog.Default.Count >= 20, $"{LanguageCatalog.Default.Count} languages");
        Assert.True(LanguageCatalog.Default.Select(l => l.Family).Distinct().Count() >= 8);
        Assert.True(LanguageCatalog.Default.Select(l => l.Script).Distinct().Count() >= 8);
    }

    [Fact]
    public void Default_codes_are_unique_iso_639_3_codes_with_one_udhr_file_each()
    {
        Assert.All(LanguageCatalog.Default, l => Assert.True(Corpus.IsLanguageCode(l.Code), l.Code));
        Assert.Equal(LanguageCatalog.Default.Count, LanguageCatalog.Default.Select(l => l.Code).Distinct().Count());
        Assert.Equal(LanguageCatalog.Default.Count, LanguageCatalog.Default.Select(l => l.UdhrFile).Distinct().Count());
        Assert.Equal("cmn_hans", LanguageCatalog.Get("cmn").UdhrFile);
        Assert.Equal("deu_1996", LanguageCatalog.Get("deu").UdhrFile);
    }

    [Fact]
    public void Unknown_code_is_a_user_error_that_lists_the_catalog()
    {
        var error = Assert.Throws<UserInputException>(() => LanguageCatalog.Get("xyz"));
        Assert.Contains("unknown language 'xyz'", error.Message);
        Assert.Contains("eng, fra", error.Message);
        Assert.Contains("--list", error.Message);
    }

    [Theory]
    [InlineData("EN")]
    [InlineData("en")]
    [InlineData("cmn_hans")]
    [InlineData("")]
    public void Malformed_code_is_a_user_error(string code)
    {
        var error = Assert.Throws<UserInputException>(() => LanguageCatalog.Get(code));
        Assert.Contains("not an ISO 639-3 language code", error.Message);
    }
}
