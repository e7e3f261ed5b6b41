using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Modeling.Analysis;

/// <summary>How far two runs' activation frequencies are apart in one layer (over all compared languages) or one language (over all layers).</summary>
/// <param name="MeanAbsoluteDifference">Mean of |B − A| over the cells.</param>
/// <param name="CosineDistance">1 − cosine similarity of the two frequency vectors.</param>
public sealed record FrequencyDistance(double MeanAbsoluteDifference, double CosineDistance);

/// <summary>
/// Differences of activation frequency between run B and run A of models with the same layers, experts and activation
/// rule (e.g. a base model and its instruction-tuned variant, profiled with the same partition) on their common languages.
/// </summary>
/// <param name="Languages">The languages both runs profiled, compared in ordinal order.</param>
/// <param name="OnlyInA">Languages only run A profiled (not compared).</param>
/// <param name="OnlyInB">Languages only run B profiled (not compared).</param>
/// <param name="Layers">Layers of both models.</param>
/// <param name="Experts">Experts per layer of both partitions.</param>
/// <param name="Rule">The activation rule of both runs.</param>
/// <param name="Difference">[language][layer][expert]: frequency in B minus frequency in A.</param>
/// <param name="LanguageLayer">[language][layer]: mean |B − A| over the layer's experts.</param>
/// <param name="PerLayer">Per layer, the distance over all compared languages' experts.</param>
/// <param name="PerLanguage">Per compared language, the distance over all layers and experts.</param>
public sealed record ProfileComparison(
    IReadOnlyList<string> Languages,
    IReadOnlyList<string> OnlyInA,
    IReadOnlyList<string> OnlyInB,
    int Layers,
    int Experts,
    string Rule,
    double[][][] Difference,
    double[][] LanguageLayer,
    IReadOnlyList<FrequencyDistance> PerLayer,
    IReadOnlyList<FrequencyDistance> PerLanguage)
{
    /// <summary>
    /// Compares <paramref name="b"/> with <paramref name="a"/>; a <see cref="UserInputException"/> when they differ in
    /// layers, experts, rule or partition, or share no language.
    /// </summary>
    public static ProfileComparison Compute(ActivationProfile a, ActivationProfile b, string nameA = "run A", string nameB = "run B",
        string? partitionA = null, string? partitionB = null)
    {
        if (a.Layers != b.Layers || a.Experts != b.Experts || a.Rule != b.Rule || (partitionA is not null && partitionB is not null && partitionA != partitionB))
        {
            throw new UserInputException(
                $"runs come from different models/partitions: {nameA} has {a.Layers} layers × {a.Experts} experts, rule {a.Rule}{Describe(partitionA)}, " +
                $"{nameB} has {b.Layers} layers × {b.Experts} experts, rule {b.Rule}{Describe(partitionB)}; profile both models with the same experts.json and --rule.");
        }
        var common = a.Languages.Keys.Intersect(b.Languages.Keys).Order(StringComparer.Ordinal).ToList();
        if (common.Count == 0)
        {
            throw new UserInputException($"{nameA} ({string.Join(", ", a.Languages.Keys)}) and {nameB} ({string.Join(", ", b.Languages.Keys)}) share no language; profile both on the same languages.");
        }
        var tableA = FrequencyTable.From(a, common, nameA);
        var tableB = FrequencyTable.From(b, common, nameB);
        var difference = new double[common.Count][][];
        var languageLayer = new double[common.Count][];
        var perLanguage = new List<FrequencyDistance>();
        for (var language = 0; language < common.Count; language++)
        {
            difference[language] = new double[a.Layers][];
            languageLayer[language] = new double[a.Layers];
            for (var layer = 0; layer < a.Layers; layer++)
            {
                difference[language][layer] = [.. tableB.Frequencies[language][layer].Zip(tableA.Frequencies[language][layer], (fb, fa) => fb - fa)];
                languageLayer[language][layer] = difference[language][layer].Average(Math.Abs);
            }
            perLanguage.Add(Distance(tableA.Flattened(language), tableB.Flattened(language)));
        }
        var perLayer = new List<FrequencyDistance>();
        for (var layer = 0; layer < a.Layers; layer++)
        {
            var layerA = Enumerable.Range(0, common.Count).SelectMany(l => tableA.Frequencies[l][layer]).ToArray();
            var layerB = Enumerable.Range(0, common.Count).SelectMany(l => tableB.Frequencies[l][layer]).ToArray();
            perLayer.Add(Distance(layerA, layerB));
        }
        return new ProfileComparison(common,
            [.. a.Languages.Keys.Except(common).Order(StringComparer.Ordinal)], [.. b.Languages.Keys.Except(common).Order(StringComparer.Ordinal)],
            a.Layers, a.Experts, a.Rule, difference, languageLayer, perLayer, perLanguage);
    }

    /// <summary>Mean |b − a| and 1 − cos(a, b).</summary>
    public static FrequencyDistance Distance(IReadOnlyList<double> a, IReadOnlyList<double> b) =>
        new(a.Zip(b, (x, y) => Math.Abs(y - x)).Average(), 1 - LanguageSimilarity.CosineSimilarity(a, b));

    private static string Describe(string? partition) => partition is null ? "" : $", partition {partition}";
}
