using Babel.Modeling.Analysis;
using Babel.Modeling.Experts;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Analysis;

/// <summary>The analyses on small hand-made count tables with known answers.</summary>
public class AnalysisTests
{
    /// <summary>A profile with 100 tokens per language, so counts are percentages.</summary>
    internal static ActivationProfile Profile(string rule, params (string Code, long[][] Counts)[] languages) =>
        new("hand-made", languages[0].Counts.Length, languages[0].Counts[0].Length, rule,
            languages.ToDictionary(l => l.Code, l => new LanguageActivations(100, l.Counts)));

    // Bar 0.5: a is high at L0 {0,1}, L1 {0}; b at L0 {0,2}, L1 {0}; c at L0 {0}, L1 {0,3}.
    private static readonly ActivationProfile _handMade = Profile("topk:1",
        ("aaa", [[90, 80, 10, 10], [60, 10, 10, 10]]),
        ("bbb", [[90, 10, 70, 10], [60, 10, 10, 10]]),
        ("ccc", [[90, 10, 10, 10], [60, 10, 10, 70]]));

    [Fact]
    public void Shared_and_specific_experts_of_a_hand_made_table()
    {
        var table = FrequencyTable.From(_handMade);
        var sharing = ExpertSharing.Compute(table, FrequencyBar.Parse("0.5"), minLanguages: 2);
        Assert.Equal([[2, 1], [2, 1], [1, 2]], sharing.HighPerLayer);
        Assert.Equal([1, 1], sharing.SharedByAllPerLayer);
        Assert.Equal([1, 1], sharing.SharedByMinPerLayer);
        Assert.Equal([[3, 1, 1, 0], [3, 0, 0, 1]], sharing.LanguagesHigh);
        Assert.Equal([(0, 1)], sharing.Specific[0].Select(e => (e.Layer, e.Expert)));
        Assert.Equal([(0, 2)], sharing.Specific[1].Select(e => (e.Layer, e.Expert)));
        Assert.Equal([(1, 3)], sharing.Specific[2].Select(e => (e.Layer, e.Expert)));
        Assert.Equal([2, 1], sharing.SpecificPerLayer(2));
        // Layer 0 expert 1 has frequencies 0.8, 0.1, 0.1 across the languages.
        var p = new[] { 0.8, 0.1, 0.1 };
        Assert.Equal(-p.Sum(x => x * Math.Log(x)) / Math.Log(3), sharing.Specific[0][0].Entropy, 12);
        Assert.Equal(0.8, sharing.Specific[0][0].Frequency, 12);
        // Equal frequencies everywhere: entropy 1 (layer 0 expert 0: 0.9 in every language).
        Assert.Equal(1.0, sharing.Entropy[0][0], 12);
        Assert.Equal(0.0, ExpertSharing.NormalisedEntropy([0.0, 0.7, 0.0]), 12);
        Assert.True(double.IsNaN(ExpertSharing.NormalisedEntropy([0.0, 0.0])));
    }

    [Fact]
    public void The_relative_bar_is_mean_plus_k_population_standard_deviations()
    {
        var bar = FrequencyBar.Parse("mean+1sd");
        double[] layer = [0.1, 0.1, 0.1, 0.5];
        // mean 0.2, population sd sqrt(0.03).
        Assert.Equal(0.2 + Math.Sqrt(0.03), bar.Threshold(layer), 12);
        Assert.Equal(0.2 + 2 * Math.Sqrt(0.03), FrequencyBar.Parse("mean+2sd").Threshold(layer), 12);
        Assert.Equal(0.2, FrequencyBar.Parse("mean+0sd").Threshold(layer), 12);
        Assert.Equal(0.3, FrequencyBar.Parse("0.3").Threshold(layer), 12);
        Assert.Equal("mean+1sd", bar.ToString());
    }

    [Theory]
    [InlineData("1.5", "outside (0, 1)")]
    [InlineData("0", "outside (0, 1)")]
    [InlineData("-0.2", "outside (0, 1)")]
    [InlineData("mean+-1sd", "K ≥ 0")]
    [InlineData("often", "not understood")]
    public void A_bar_outside_its_range_is_a_clear_error(string text, string expected)
    {
        var error = Assert.Throws<UserInputException>(() => FrequencyBar.Parse(text));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cosine_and_spearman_match_known_values_and_naive_formulas()
    {
        Assert.Equal(1 / Math.Sqrt(2), LanguageSimilarity.CosineSimilarity([1.0, 0.0], [1.0, 1.0]), 12);
        // scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]) = 0.8207826816681233 (the tie 7, 7 gets rank 3.5).
        Assert.Equal(0.8207826816681233, LanguageSimilarity.SpearmanCorrelation([1.0, 2, 3, 4, 5], [5.0, 6, 7, 8, 7]), 12);
        Assert.Equal([1.0, 2.5, 2.5, 4], LanguageSimilarity.AverageRanks([1.0, 3, 3, 7]));
        Assert.Equal(0.0, LanguageSimilarity.SpearmanCorrelation([1.0, 1, 1], [1.0, 2, 3]));

        var random = new Random(11);
        for (var trial = 0; trial < 20; trial++)
        {
            var a = Enumerable.Range(0, 30).Select(_ => random.NextDouble()).ToArray();
            var b = Enumerable.Range(0, 30).Select(_ => random.NextDouble()).ToArray();
            var cosine = a.Zip(b, (x, y) => x * y).Sum() / (Math.Sqrt(a.Sum(x => x * x)) * Math.Sqrt(b.Sum(y => y * y)));
            Assert.Equal(cosine, LanguageSimilarity.CosineSimilarity(a, b), 12);
            // Without ties Spearman is 1 − 6 Σd² / (n (n² − 1)), with d the rank differences.
            var rankA = a.Select(x => a.Count(y => y < x) + 1.0).ToArray();
            var rankB = b.Select(x => b.Count(y => y < x) + 1.0).ToArray();
            var n = a.Length;
            var spearman = 1 - 6 * rankA.Zip(rankB, (x, y) => (x - y) * (x - y)).Sum() / (n * ((double)n * n - 1));
            Assert.Equal(spearman, LanguageSimilarity.SpearmanCorrelation(a, b), 12);
        }
    }

    [Fact]
    public void Similarity_matrix_compares_flattened_layers_by_experts()
    {
        var table = FrequencyTable.From(_handMade);
        var matrix = LanguageSimilarity.Matrix(table, LanguageSimilarity.Cosine);
        Assert.Equal(1.0, matrix[1, 1]);
        Assert.Equal(matrix[0, 2], matrix[2, 0]);
        Assert.Equal(LanguageSimilarity.CosineSimilarity(table.Flattened(0), table.Flattened(2)), matrix[0, 2], 15);
        Assert.Equal([0.9, 0.8, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1], table.Flattened(0));
    }

    [Fact]
    public void Average_linkage_merges_a_hand_example_in_the_known_order()
    {
        // Points on a line at 0, 1, 5, 6, 20; distance |x − y|.
        double[] points = [0, 1, 5, 6, 20];
        var distance = new double[5, 5];
        for (var i = 0; i < 5; i++)
        {
            for (var j = 0; j < 5; j++) distance[i, j] = Math.Abs(points[i] - points[j]);
        }
        var dendrogram = AverageLinkage.Cluster(distance);
        // {0,1} and {2,3} tie at 1: the smaller ids go first. {0,1}–{2,3} averages (5+6+4+5)/4 = 5 (single linkage
        // would say 4, complete 6); the last merge averages (20+19+15+14)/4 = 17.
        Assert.Equal(
            [new ClusterMerge(0, 1, 1, 2), new ClusterMerge(2, 3, 1, 2), new ClusterMerge(5, 6, 5, 4), new ClusterMerge(4, 7, 17, 5)],
            dendrogram.Merges);
        Assert.Equal([4, 0, 1, 2, 3], dendrogram.LeafOrder);
    }

    private static double[,] BlockSimilarity(int blocks, int size, double within, double between)
    {
        var n = blocks * size;
        var similarity = new double[n, n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++) similarity[i, j] = i == j ? 1 : i / size == j / size ? within : between;
        }
        return similarity;
    }

    [Fact]
    public void Family_score_is_high_and_significant_when_families_separate_perfectly()
    {
        var similarity = BlockSimilarity(3, 3, 0.9, 0.1);
        var codes = Enumerable.Range(0, 9).Select(i => $"l{i:00}").ToList();
        string?[] families = ["A", "A", "A", "B", "B", "B", "C", "C", "C"];
        var agreement = FamilyAgreement.Compute(similarity, codes, families, 1000, seed: 3)!;
        Assert.Equal(0.9, agreement.WithinFamily, 12);
        Assert.Equal(0.1, agreement.BetweenFamily, 12);
        Assert.Equal(0.8, agreement.Score, 12);
        Assert.Equal((9, 27), (agreement.WithinPairs, agreement.BetweenPairs));
        // Only the 6 of 1680 label arrangements that keep the grouping score as high: p ≈ 0.0036 + 1/1001.
        Assert.True(agreement.PValue < 0.02, $"p = {agreement.PValue}");
        Assert.Equal(agreement.PValue, FamilyAgreement.Compute(similarity, codes, families, 1000, seed: 3)!.PValue);

        // Labels that cut across the blocks: within-family pairs are all between blocks.
        string?[] shuffled = ["A", "B", "C", "A", "B", "C", "A", "B", "C"];
        var crossing = FamilyAgreement.Compute(similarity, codes, shuffled, 1000, seed: 3)!;
        Assert.Equal(0.1, crossing.WithinFamily, 12);
        Assert.Equal((9 * 0.9 + 18 * 0.1) / 27, crossing.BetweenFamily, 12);
        Assert.True(crossing.Score < 0);
        Assert.True(crossing.PValue > 0.5, $"p = {crossing.PValue}");
    }

    [Fact]
    public void Family_score_p_value_counts_ties_and_leaves_out_unknown_families()
    {
        var codes = Enumerable.Range(0, 7).Select(i => $"l{i:00}").ToList();
        var flat = BlockSimilarity(1, 7, 0.5, 0.5);
        string?[] families = ["A", "A", "B", "B", "C", "C", null];
        // Every permutation ties with the observed score 0: p = (1 + P) / (1 + P) = 1.
        var tied = FamilyAgreement.Compute(flat, codes, families, 200, seed: 1)!;
        Assert.Equal(0.0, tied.Score, 12);
        Assert.Equal(1.0, tied.PValue);
        Assert.Equal(["l06"], tied.LanguagesWithoutFamily);
        Assert.Equal(6, tied.Languages.Count);
        Assert.Equal(1.0, FamilyAgreement.Compute(flat, codes, families, 0, seed: 1)!.PValue);
        // Every language in its own family: no within-family pair, so no score.
        Assert.Null(FamilyAgreement.Compute(flat, codes, ["A", "B", "C", "D", "E", "F", "G"], 10, seed: 1));
    }

    [Fact]
    public void Comparison_distances_per_layer_and_language()
    {
        var a = Profile("topk:1", ("eng", [[50, 50], [20, 80]]), ("fra", [[40, 60], [30, 70]]), ("deu", [[10, 10], [10, 10]]));
        var b = Profile("topk:1", ("eng", [[60, 40], [20, 80]]), ("fra", [[40, 60], [70, 30]]), ("spa", [[10, 10], [10, 10]]));
        var comparison = ProfileComparison.Compute(a, b);
        Assert.Equal(["eng", "fra"], comparison.Languages);
        Assert.Equal(["deu"], comparison.OnlyInA);
        Assert.Equal(["spa"], comparison.OnlyInB);
        AssertClose([0.1, -0.1], comparison.Difference[0][0]);
        AssertClose([0.4, -0.4], comparison.Difference[1][1]);
        // Layer 0 over both languages: |.1| |.1| 0 0 → 0.05; layer 1: 0 0 .4 .4 → 0.2.
        Assert.Equal(0.05, comparison.PerLayer[0].MeanAbsoluteDifference, 12);
        Assert.Equal(0.2, comparison.PerLayer[1].MeanAbsoluteDifference, 12);
        double[] layer1A = [0.2, 0.8, 0.3, 0.7];
        double[] layer1B = [0.2, 0.8, 0.7, 0.3];
        var cosine = layer1A.Zip(layer1B, (x, y) => x * y).Sum() / Math.Sqrt(layer1A.Sum(x => x * x) * layer1B.Sum(x => x * x));
        Assert.Equal(1 - cosine, comparison.PerLayer[1].CosineDistance, 12);
        Assert.Equal(0.0, comparison.PerLayer[0].CosineDistance - (1 - LanguageSimilarity.CosineSimilarity([0.5, 0.5, 0.4, 0.6], [0.6, 0.4, 0.4, 0.6])), 12);
        Assert.Equal(0.05, comparison.PerLanguage[0].MeanAbsoluteDifference, 12);
        AssertClose([0.1, 0.0], comparison.LanguageLayer[0]);
        AssertClose([0.0, 0.4], comparison.LanguageLayer[1]);
    }

    private static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 12);
    }

    [Theory]
    [InlineData(3, 2, "topk:1", null, null)]
    [InlineData(2, 3, "topk:1", null, null)]
    [InlineData(2, 2, "topk:2", null, null)]
    [InlineData(2, 2, "topk:1", "{\"method\":\"balanced-kmeans\",\"seed\":1}", "{\"method\":\"random\",\"seed\":1}")]
    public void Runs_of_different_models_or_partitions_are_refused(int layers, int experts, string rule, string? partitionA, string? partitionB)
    {
        var a = Profile("topk:1", ("eng", [[50, 50], [20, 80]]));
        var counts = Enumerable.Range(0, layers).Select(_ => Enumerable.Repeat(10L, experts).ToArray()).ToArray();
        var b = Profile(rule, ("eng", counts));
        var error = Assert.Throws<UserInputException>(() => ProfileComparison.Compute(a, b, "A", "B", partitionA, partitionB));
        Assert.Contains("runs come from different models/partitions", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_input_is_one_clear_sentence()
    {
        var a = Profile("topk:1", ("eng", [[50, 50]]));
        var b = Profile("topk:1", ("fra", [[50, 50]]));
        Assert.Contains("share no language", Assert.Throws<UserInputException>(() => ProfileComparison.Compute(a, b)).Message, StringComparison.Ordinal);
        var absent = Assert.Throws<UserInputException>(() => ExpertAnalysis.Compute(_handMade, new AnalysisOptions { Languages = ["aaa", "zzz"] }));
        Assert.Contains("'zzz' is not in", absent.Message, StringComparison.Ordinal);
        var range = Assert.Throws<UserInputException>(() => ExpertAnalysis.Compute(_handMade, new AnalysisOptions { MinLanguages = 4 }));
        Assert.Contains("outside 1 … 3", range.Message, StringComparison.Ordinal);
        var single = Assert.Throws<UserInputException>(() => ExpertAnalysis.Compute(_handMade, new AnalysisOptions { Languages = ["aaa"] }));
        Assert.Contains("at least two languages", single.Message, StringComparison.Ordinal);
        using var scratch = new ScratchFolder();
        var missing = Assert.Throws<UserInputException>(() => ExpertAnalysis.Run(scratch.Path, new AnalysisOptions()));
        Assert.Contains("activations.json is missing", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Families_come_from_the_catalog_at_family_or_branch_level()
    {
        Assert.Equal("Indo-European|Indo-European|Sino-Tibetan|(none)",
            string.Join("|", LanguageFamilies.Resolve(["eng", "fra", "cmn", "xyz"], LanguageFamilies.Family, null).Select(f => f ?? "(none)")));
        Assert.Equal("Indo-European / Germanic|Indo-European / Romance", string.Join("|", LanguageFamilies.Resolve(["eng", "fra"], LanguageFamilies.Branch, null)));
    }

    [Fact]
    public void The_analysis_reads_its_numbers()
    {
        var analysis = ExpertAnalysis.Compute(_handMade, new AnalysisOptions { Bar = "0.5", MinLanguages = 2, Permutations = 10 });
        var findings = analysis.Findings().ToDictionary(f => f.Key, f => f.Reading);
        Assert.StartsWith("1 of 4 experts in layer 0 are high-frequency in all 3 languages (per layer: 1, 1)", findings["shared"], StringComparison.Ordinal);
        Assert.Contains("aaa (1), bbb (1), ccc (1) have the most language-specific experts", findings["specific"], StringComparison.Ordinal);
        // The made-up codes have no family: no score, said plainly.
        Assert.StartsWith("No family score", findings["families"], StringComparison.Ordinal);
    }
}
