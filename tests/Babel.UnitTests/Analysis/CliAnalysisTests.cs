using System.Text.Json.Nodes;
using Babel.Modeling.Analysis;
using Babel.Modeling.Experts;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Analysis;

/// <summary><c>babel analyze</c> end to end on a tiny profile written by hand.</summary>
public class CliAnalysisTests
{
    private static string WriteRun(ScratchFolder scratch, string name, int shift, int layers = 3, string rule = "topk:2")
    {
        var directory = scratch.Combine(name);
        Directory.CreateDirectory(directory);
        var random = new Random(5 + shift);
        // Languages of two families with a shared bias, so the family score has something to find.
        string[] codes = ["eng", "deu", "fra", "spa", "cmn", "jpn"];
        var languages = new Dictionary<string, LanguageActivations>();
        foreach (var (code, i) in codes.Select((c, i) => (c, i)))
        {
            languages[code] = new LanguageActivations(1000, [.. Enumerable.Range(0, layers).Select(layer =>
                Enumerable.Range(0, 8).Select(e => (long)(100 + (e == (i < 4 ? 1 : 6) ? 500 : 0) + (e == layer ? 300 : 0) + random.Next(60) + shift * e)).ToArray())]);
        }
        new ActivationProfile("tiny", layers, 8, rule, languages).Save(directory);
        return directory;
    }

    [Fact]
    public void Analyze_writes_analysis_json_figures_and_report_sections()
    {
        using var scratch = new ScratchFolder();
        var run = WriteRun(scratch, "run", 0);
        var (code, output, error) = Run("analyze", "--run", run, "--permutations", "200", "--seed", "4");
        Assert.True(code == 0, error);
        Assert.Contains("Multilingual shared experts:", output, StringComparison.Ordinal);
        var folder = Path.Combine(run, ExpertAnalysis.FolderName);
        foreach (var figure in new[] { "high-frequency.png", "shared-experts.png", "similarity.png", "dendrogram.png" })
        {
            Assert.True(new FileInfo(Path.Combine(folder, figure)).Length > 1000, figure);
        }
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, ExpertAnalysis.FileName)))!;
        Assert.Equal(4, json["parameters"]!["seed"]!.GetValue<long>());
        Assert.Equal(200, json["parameters"]!["permutations"]!.GetValue<int>());
        Assert.Equal("mean+1sd", json["parameters"]!["bar"]!.GetValue<string>());
        Assert.Equal(3, json["parameters"]!["min_languages"]!.GetValue<int>());
        Assert.Equal(6, json["findings"]!.AsArray().Count);
        // eng, deu, fra, spa (Indo-European) share a bias the two others lack: the family score finds it.
        var agreement = json["family_agreement"]!["cosine"]!;
        Assert.True(agreement["score"]!.GetValue<double>() > 0);
        Assert.Empty(agreement["languages_without_family"]!.AsArray());
        Assert.Equal(6, agreement["within_pairs"]!.GetValue<int>());
        var report = File.ReadAllText(Path.Combine(run, ActivationReport.FileName));
        Assert.Contains("<h2>Multilingual shared experts</h2>", report, StringComparison.Ordinal);
        Assert.Contains("<h2>Agreement with language families</h2>", report, StringComparison.Ordinal);
        Assert.Contains("alt=\"analysis/dendrogram.png\"", report, StringComparison.Ordinal);
        Assert.Equal(6, AnalysisSections.Read(run).Count);
    }

    [Fact]
    public void Families_come_from_the_profiled_corpus_named_in_the_manifest()
    {
        using var scratch = new ScratchFolder();
        var run = WriteRun(scratch, "run", 0);
        var corpus = scratch.Combine("corpus");
        string[] codes = ["eng", "deu", "fra", "spa", "cmn", "jpn"];
        Babel.Storage.Corpora.CorpusWriter.Write(corpus, new Babel.Storage.Corpora.CorpusManifest("t", "t", "MIT",
            [.. codes.Select((c, i) => new Babel.Storage.Corpora.CorpusLanguage(c, c, "Latin", i < 3 ? "North / One" : "South / Two", "t", "MIT"))],
            new Babel.Storage.Corpora.CorpusSplitManifest([], "none")), codes.ToDictionary(c => c, c => (IReadOnlyList<Babel.Storage.Corpora.CorpusDocument>)[new("d1", "text")]));
        File.WriteAllText(Path.Combine(run, "manifest.json"), new JsonObject { ["corpus_folder"] = corpus }.ToJsonString());
        var (code, _, error) = Run("analyze", "--run", run, "--permutations", "10");
        Assert.True(code == 0, error);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(run, ExpertAnalysis.FolderName, ExpertAnalysis.FileName)))!;
        Assert.Equal("North", json["families"]!["eng"]!.GetValue<string>());
        Assert.Equal("South", json["families"]!["jpn"]!.GetValue<string>());
        Assert.Equal(Path.GetFullPath(corpus), json["parameters"]!["families_from"]!.GetValue<string>());
    }

    [Fact]
    public void Compare_writes_differences_and_refuses_runs_of_another_model()
    {
        using var scratch = new ScratchFolder();
        var a = WriteRun(scratch, "a", 0);
        var b = WriteRun(scratch, "b", 3);
        var (code, output, error) = Run("analyze", "--compare", a, b);
        Assert.True(code == 0, error);
        Assert.Contains("Per-layer distance", output, StringComparison.Ordinal);
        var folder = Path.Combine(b, ComparisonRun.FolderName);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, ComparisonRun.FileName)))!;
        Assert.Equal(3, json["per_layer"]!.AsArray().Count);
        Assert.True(File.Exists(Path.Combine(folder, "difference-eng.png")));
        Assert.True(File.Exists(Path.Combine(folder, "difference-languages.png")));
        Assert.True(File.Exists(Path.Combine(folder, "layer-distance.png")));
        Assert.Contains("Per-layer distance of activation patterns", File.ReadAllText(Path.Combine(b, ActivationReport.FileName)), StringComparison.Ordinal);

        var other = WriteRun(scratch, "other", 0, layers: 2);
        (code, _, error) = Run("analyze", "--compare", a, other, "--out", scratch.Combine("out"));
        Assert.Equal(2, code);
        Assert.Contains("runs come from different models/partitions", error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Theory]
    [InlineData("--bar", "2", "outside (0, 1)")]
    [InlineData("--languages", "eng,xho", "'xho' is not in")]
    [InlineData("--min-languages", "9", "outside 1 … 6")]
    public void Bad_options_are_one_sentence_and_write_nothing(string option, string value, string expected)
    {
        using var scratch = new ScratchFolder();
        var run = WriteRun(scratch, "run", 0);
        var (code, _, error) = Run("analyze", "--run", run, option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(run, ExpertAnalysis.FolderName)));
    }

    [Fact]
    public void A_folder_without_activations_json_is_a_clear_error()
    {
        using var scratch = new ScratchFolder();
        var (code, _, error) = Run("analyze", "--run", scratch.Path);
        Assert.Equal(2, code);
        Assert.Contains("activations.json is missing", error, StringComparison.Ordinal);
    }
}
