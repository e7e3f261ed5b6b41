using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Modeling.Analysis;

/// <summary>
/// <c>babel analyze --compare RUN_A RUN_B</c>: the activation-frequency differences of two runs (e.g. a base model and
/// its instruction-tuned variant) as comparison.json, difference heatmaps and a per-layer distance plot.
/// </summary>
public static class ComparisonRun
{
    /// <summary>The default output folder inside run B, where run B's report finds it.</summary>
    public const string FolderName = "comparison";
    public const string FileName = "comparison.json";

    /// <summary>Compares the runs and writes the comparison folder atomically (default: RUN_B/comparison); returns it and the findings.</summary>
    public static (ProfileComparison Comparison, IReadOnlyList<AnalysisFinding> Findings, string Directory) Run(string runA, string runB, string? outputDirectory = null)
    {
        var profileA = ActivationProfile.Load(runA);
        var profileB = ActivationProfile.Load(runB);
        var (manifestA, manifestB) = (RunManifest.Read(runA), RunManifest.Read(runB));
        var nameA = "A";
        var nameB = "B";
        var comparison = ProfileComparison.Compute(profileA, profileB, $"run A ({runA})", $"run B ({runB})", manifestA.Partition?.ToString(), manifestB.Partition?.ToString());
        var findings = Findings(comparison, nameA, nameB, $"A = {Name(runA)}, B = {Name(runB)}. ");
        var directory = outputDirectory ?? Path.Combine(runB, FolderName);
        AtomicFile.WriteDirectory(directory, folder =>
        {
            AnalysisPlots.WriteComparison(comparison, nameA, nameB, folder);
            var json = ToJson(comparison, findings, Path.GetFullPath(runA), Path.GetFullPath(runB), profileA, profileB);
            File.WriteAllText(Path.Combine(folder, FileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        });
        return (comparison, findings, Path.GetFullPath(directory));
    }

    /// <summary>The findings of <paramref name="comparison"/>; <paramref name="legend"/> (which run is which) starts the first reading.</summary>
    public static IReadOnlyList<AnalysisFinding> Findings(ProfileComparison comparison, string nameA, string nameB, string legend = "")
    {
        var perLayer = comparison.PerLayer;
        var most = Enumerable.Range(0, perLayer.Count).MaxBy(l => perLayer[l].MeanAbsoluteDifference);
        var least = Enumerable.Range(0, perLayer.Count).MinBy(l => perLayer[l].MeanAbsoluteDifference);
        var overall = perLayer.Average(d => d.MeanAbsoluteDifference);
        var layerReading = legend + ExpertAnalysis.Invariant(
            $"Layer {most} changes most from {nameA} to {nameB} (mean |B − A| = {perLayer[most].MeanAbsoluteDifference:0.####}, 1 − cosine = {perLayer[most].CosineDistance:0.####}), layer {least} least ({perLayer[least].MeanAbsoluteDifference:0.####}); mean over layers {overall:0.####}.");

        var perLanguage = comparison.PerLanguage;
        var changed = Enumerable.Range(0, perLanguage.Count).MaxBy(l => perLanguage[l].MeanAbsoluteDifference);
        var stable = Enumerable.Range(0, perLanguage.Count).MinBy(l => perLanguage[l].MeanAbsoluteDifference);
        var notCompared = comparison.OnlyInA.Count + comparison.OnlyInB.Count == 0 ? "" :
            $"; not compared (in one run only): {string.Join(", ", comparison.OnlyInA.Concat(comparison.OnlyInB))}";
        var (language, layer, expert) = LargestChange(comparison);
        var cell = comparison.Difference[language][layer][expert];
        var languageReading = ExpertAnalysis.Invariant(
            $"Of {comparison.Languages.Count} languages, {comparison.Languages[changed]} changed most (mean |B − A| = {perLanguage[changed].MeanAbsoluteDifference:0.####}) and {comparison.Languages[stable]} least ({perLanguage[stable].MeanAbsoluteDifference:0.####}); the largest single change is {cell:+0.###;-0.###;0} for {comparison.Languages[language]} layer {layer} expert {expert}{notCompared}.");
        return
        [
            new("layer_distance", $"Per-layer distance of activation patterns ({nameB} vs {nameA})", layerReading, ["layer-distance.png"]),
            new("language_difference", $"Per-language differences of activation frequency ({nameB} − {nameA})", languageReading,
                ["difference-languages.png", $"difference-{comparison.Languages[language]}.png"]),
        ];
    }

    private static string Name(string run) => Path.GetFileName(Path.GetFullPath(run).TrimEnd(Path.DirectorySeparatorChar));

    private static (int Language, int Layer, int Expert) LargestChange(ProfileComparison comparison)
    {
        var best = (0, 0, 0);
        var largest = -1.0;
        for (var l = 0; l < comparison.Languages.Count; l++)
        {
            for (var layer = 0; layer < comparison.Layers; layer++)
            {
                for (var e = 0; e < comparison.Experts; e++)
                {
                    var size = Math.Abs(comparison.Difference[l][layer][e]);
                    if (size > largest) (largest, best) = (size, (l, layer, e));
                }
            }
        }
        return best;
    }

    private static JsonObject ToJson(ProfileComparison comparison, IReadOnlyList<AnalysisFinding> findings, string runA, string runB, ActivationProfile a, ActivationProfile b) => new()
    {
        ["run_a"] = runA,
        ["run_b"] = runB,
        ["model_a"] = a.Model,
        ["model_b"] = b.Model,
        ["layers"] = comparison.Layers,
        ["experts"] = comparison.Experts,
        ["rule"] = comparison.Rule,
        ["languages"] = ExpertAnalysis.Strings(comparison.Languages),
        ["only_in_a"] = ExpertAnalysis.Strings(comparison.OnlyInA),
        ["only_in_b"] = ExpertAnalysis.Strings(comparison.OnlyInB),
        ["difference"] = "frequency in B minus frequency in A",
        ["findings"] = new JsonArray([.. findings.Select(f => (JsonNode)new JsonObject
        {
            ["key"] = f.Key,
            ["title"] = f.Title,
            ["reading"] = f.Reading,
            ["figures"] = ExpertAnalysis.Strings(f.Figures),
        })]),
        ["per_layer"] = new JsonArray([.. comparison.PerLayer.Select((d, l) => (JsonNode)new JsonObject
        {
            ["layer"] = l,
            ["mean_absolute_difference"] = ExpertAnalysis.Number(d.MeanAbsoluteDifference),
            ["cosine_distance"] = ExpertAnalysis.Number(d.CosineDistance),
        })]),
        ["per_language"] = new JsonObject(comparison.Languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)new JsonObject
        {
            ["mean_absolute_difference"] = ExpertAnalysis.Number(comparison.PerLanguage[i].MeanAbsoluteDifference),
            ["cosine_distance"] = ExpertAnalysis.Number(comparison.PerLanguage[i].CosineDistance),
            ["per_layer_mean_absolute_difference"] = ExpertAnalysis.Numbers(comparison.LanguageLayer[i]),
            ["difference"] = new JsonArray([.. comparison.Difference[i].Select(layer => (JsonNode)ExpertAnalysis.Numbers(layer))]),
        }))),
    };
}
