using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Modeling.Analysis;

/// <summary>Parameters of <c>babel analyze --run</c>; all of them are recorded in <c>analysis.json</c>.</summary>
public sealed record AnalysisOptions
{
    /// <summary>The high-frequency bar (<see cref="FrequencyBar.Parse"/>).</summary>
    public string Bar { get; init; } = FrequencyBar.Default;
    /// <summary>"Shared by at least N languages"; null = half the languages, rounded up.</summary>
    public int? MinLanguages { get; init; }
    /// <summary>The similarity that clustering and the family score use (both measures are always computed).</summary>
    public string Similarity { get; init; } = LanguageSimilarity.Cosine;
    public string FamilyLevel { get; init; } = LanguageFamilies.Family;
    /// <summary>Corpus folder whose corpus.json gives the families; null = the run's corpus (manifest.json's corpus_folder) if present, else the built-in language catalog.</summary>
    public string? CorpusDirectory { get; init; }
    public int Permutations { get; init; } = 1000;
    public long Seed { get; init; } = 1;
    /// <summary>Languages to analyse; null = every language of the run.</summary>
    public IReadOnlyList<string>? Languages { get; init; }
}

/// <summary>A titled finding: one plain-language reading computed from the numbers, and the figures that show it.</summary>
public sealed record AnalysisFinding(string Key, string Title, string Reading, IReadOnlyList<string> Figures);

/// <summary>
/// The analyses of one profile run ("Unraveling Babel" §4): high-frequency experts per language and layer,
/// multilingual shared and language-specific experts, language similarity with average-linkage clustering, and the
/// agreement of that similarity with the known language families.
/// </summary>
public sealed record ExpertAnalysis(
    AnalysisOptions Options,
    FrequencyBar Bar,
    int MinLanguages,
    FrequencyTable Table,
    string?[] Families,
    ExpertSharing Sharing,
    double[,] Cosine,
    double[,] Spearman,
    Dendrogram Dendrogram,
    FamilyAgreement? CosineAgreement,
    FamilyAgreement? SpearmanAgreement)
{
    /// <summary>The analyses folder inside a run folder.</summary>
    public const string FolderName = "analysis";
    public const string FileName = "analysis.json";

    /// <summary>The similarity matrix clustering and the family score use.</summary>
    public double[,] Similarity => Options.Similarity == LanguageSimilarity.Spearman ? Spearman : Cosine;
    public FamilyAgreement? Agreement => Options.Similarity == LanguageSimilarity.Spearman ? SpearmanAgreement : CosineAgreement;

    public static ExpertAnalysis Compute(ActivationProfile profile, AnalysisOptions options)
    {
        var bar = FrequencyBar.Parse(options.Bar);
        if (!LanguageSimilarity.Measures.Contains(options.Similarity))
        {
            throw new UserInputException($"--similarity '{options.Similarity}' is not one of: {string.Join(", ", LanguageSimilarity.Measures)}.");
        }
        if (options.Permutations < 0) throw new UserInputException($"--permutations must be 0 or more (got {options.Permutations}).");
        var table = FrequencyTable.From(profile, options.Languages);
        var count = table.Languages.Count;
        if (count < 2) throw new UserInputException($"the analyses compare languages, but the run has {count}; profile at least two languages.");
        var minLanguages = options.MinLanguages ?? (count + 1) / 2;
        if (minLanguages < 1 || minLanguages > count)
        {
            throw new UserInputException($"--min-languages {minLanguages} is outside 1 … {count} (the run's language count); pick a number in that range.");
        }
        var families = LanguageFamilies.Resolve(table.Languages, options.FamilyLevel, options.CorpusDirectory);
        var sharing = ExpertSharing.Compute(table, bar, minLanguages);
        var cosine = LanguageSimilarity.Matrix(table, LanguageSimilarity.Cosine);
        var spearman = LanguageSimilarity.Matrix(table, LanguageSimilarity.Spearman);
        var chosen = options.Similarity == LanguageSimilarity.Spearman ? spearman : cosine;
        var distance = new double[count, count];
        for (var i = 0; i < count; i++)
        {
            for (var j = 0; j < count; j++) distance[i, j] = i == j ? 0 : 1 - chosen[i, j];
        }
        var dendrogram = AverageLinkage.Cluster(distance);
        return new ExpertAnalysis(options, bar, minLanguages, table, families, sharing, cosine, spearman, dendrogram,
            FamilyAgreement.Compute(cosine, table.Languages, families, options.Permutations, options.Seed),
            FamilyAgreement.Compute(spearman, table.Languages, families, options.Permutations, options.Seed));
    }

    /// <summary>
    /// Analyses the run in <paramref name="runDirectory"/> and writes <c>analysis/</c> (analysis.json and the figures)
    /// into it atomically; returns the analysis and the findings.
    /// </summary>
    public static (ExpertAnalysis Analysis, IReadOnlyList<AnalysisFinding> Findings) Run(string runDirectory, AnalysisOptions options)
    {
        var profile = ActivationProfile.Load(runDirectory);
        var manifest = RunManifest.Read(runDirectory);
        // Without --corpus, the families come from the profiled corpus when its folder is still there.
        if (options.CorpusDirectory is null && manifest.CorpusFolder is { } corpus && File.Exists(Path.Combine(corpus, Storage.Corpora.CorpusManifest.FileName)))
        {
            options = options with { CorpusDirectory = corpus };
        }
        var analysis = Compute(profile, options);
        var findings = analysis.Findings();
        AtomicFile.WriteDirectory(Path.Combine(runDirectory, FolderName), folder =>
        {
            AnalysisPlots.Write(analysis, folder);
            File.WriteAllText(Path.Combine(folder, FileName), analysis.ToJson(profile, manifest, findings).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        });
        return (analysis, findings);
    }

    /// <summary>Label of language <paramref name="i"/> in figures: code and family.</summary>
    public string Label(int i) => Families[i] is { } family ? $"{Table.Languages[i]} ({family})" : $"{Table.Languages[i]} (family unknown)";

    public IReadOnlyList<AnalysisFinding> Findings()
    {
        var layers = Table.Layers;
        var count = Table.Languages.Count;
        var meanHigh = Enumerable.Range(0, layers).Select(l => Sharing.HighPerLayer.Average(language => language[l])).ToArray();
        var most = ArgMax(meanHigh);
        var fewest = ArgMin(meanHigh);
        var spread = meanHigh[most] == meanHigh[fewest]
            ? "the same in every layer"
            : Invariant($"most in layer {most} ({meanHigh[most]:0.#}), fewest in layer {fewest} ({meanHigh[fewest]:0.#})");
        var highReading = Invariant(
            $"With the bar {Bar} ({Bar.Describe()}), a language has on average {meanHigh.Average():0.#} high-frequency experts per layer (of {Table.Experts}); {spread}.");

        var all = Sharing.SharedByAllPerLayer;
        var atLeast = Sharing.SharedByMinPerLayer;
        var shareMost = ArgMax([.. atLeast.Select(c => (double)c)]);
        var sharedReading = Invariant(
            $"{all[0]} of {Table.Experts} experts in layer 0 are high-frequency in all {count} languages (per layer: {string.Join(", ", all)}); in ≥ {MinLanguages} languages: {string.Join(", ", atLeast)} per layer, most in layer {shareMost}.");

        var specificCounts = Sharing.Specific.Select((s, i) => (Language: Table.Languages[i], s.Count)).OrderByDescending(x => x.Count).ThenBy(x => x.Language, StringComparer.Ordinal).ToList();
        var none = specificCounts.Count(x => x.Count == 0);
        var mostSpecific = Sharing.Specific.SelectMany((s, i) => s.Select(e => (Language: Table.Languages[i], Expert: e))).OrderBy(x => x.Expert.Entropy).FirstOrDefault();
        var specificReading = specificCounts[0].Count == 0
            ? "No expert is high-frequency in exactly one language: every high-frequency expert is shared by at least two languages."
            : Invariant($"{string.Join(", ", specificCounts.Where(x => x.Count > 0).Take(3).Select(x => $"{x.Language} ({x.Count})"))} have the most language-specific experts (high in that language only); {none} of {count} languages have none; the most specific is layer {mostSpecific.Expert.Layer} expert {mostSpecific.Expert.Expert} of {mostSpecific.Language} (normalised entropy across languages {mostSpecific.Expert.Entropy:0.###}).");

        var (minPair, maxPair) = Extremes(Similarity);
        var name = Options.Similarity;
        var similarityReading = Invariant(
            $"{Capitalise(name)} similarity of the languages' activation frequencies ranges from {Similarity[minPair.I, minPair.J]:0.###} ({Pair(minPair)}) to {Similarity[maxPair.I, maxPair.J]:0.###} ({Pair(maxPair)}); {OtherMeasureSummary()}");

        var top = Dendrogram.Merges.Count > 0 ? Dendrogram.Merges[^1] : null;
        var firstMerges = Dendrogram.Merges.Where(m => m.Left < count && m.Right < count).Take(3)
            .Select(m => Invariant($"{Table.Languages[m.Left]}+{Table.Languages[m.Right]} ({m.Height:0.####})"));
        var dendrogramReading = top is null
            ? "One language: nothing to cluster."
            : Invariant($"Average linkage on 1 − {name} first joins {string.Join(", ", firstMerges)}; the top split separates {Size(top.Left)} from {Size(top.Right)} languages at distance {top.Height:0.####}.");

        var familyReading = FamilyReading(Agreement, name);
        return
        [
            new("high_frequency", "High-frequency experts per layer", highReading, ["high-frequency.png"]),
            new("shared", "Multilingual shared experts", sharedReading, ["shared-experts.png"]),
            new("specific", "Language-specific experts", specificReading, []),
            new("similarity", "Language similarity", similarityReading, ["similarity.png"]),
            new("clustering", "Hierarchical clustering of languages", dendrogramReading, ["dendrogram.png"]),
            new("families", "Agreement with language families", familyReading, []),
        ];

        string Pair((int I, int J) p) => $"{Table.Languages[p.I]}–{Table.Languages[p.J]}";
        int Size(int cluster) => cluster < count ? 1 : Dendrogram.Merges[cluster - count].Size;
        string OtherMeasureSummary()
        {
            var other = name == LanguageSimilarity.Cosine ? Spearman : Cosine;
            var (low, high) = Extremes(other);
            return Invariant($"{(name == LanguageSimilarity.Cosine ? "Spearman" : "cosine")} ranges from {other[low.I, low.J]:0.###} to {other[high.I, high.J]:0.###}.");
        }
    }

    private string FamilyReading(FamilyAgreement? agreement, string measure)
    {
        if (agreement is null)
        {
            return "No family score: the languages with a known family give no pair within one family, or none across families.";
        }
        var direction = agreement.Score >= 0 ? "exceeds" : "is below";
        var significance = agreement.Permutations == 0 ? "no permutations run" : agreement.PValue <= 0.05 ? "significant at 0.05" : "not significant at 0.05";
        var unknown = agreement.LanguagesWithoutFamily.Count == 0 ? "" : Invariant($"; left out for unknown family: {string.Join(", ", agreement.LanguagesWithoutFamily)}");
        var familyCount = Families.Where(f => f is not null).Distinct().Count();
        return Invariant(
            $"Within-family {measure} similarity ({agreement.WithinFamily:0.####}) {direction} between-family ({agreement.BetweenFamily:0.####}) by {Math.Abs(agreement.Score):0.####} (p = {agreement.PValue:0.###}, {agreement.Permutations} permutations, {significance}; {agreement.Languages.Count} languages in {familyCount} {Options.FamilyLevel} groups{unknown}).");
    }

    public JsonObject ToJson(ActivationProfile profile, RunManifest manifest, IReadOnlyList<AnalysisFinding> findings)
    {
        var languages = Table.Languages;
        return new JsonObject
        {
            ["model"] = profile.Model,
            ["corpus_name"] = manifest.CorpusName,
            ["layers"] = Table.Layers,
            ["experts"] = Table.Experts,
            ["rule"] = profile.Rule,
            ["parameters"] = new JsonObject
            {
                ["bar"] = Bar.ToString(),
                ["bar_meaning"] = Bar.Describe(),
                ["min_languages"] = MinLanguages,
                ["similarity"] = Options.Similarity,
                ["family_level"] = Options.FamilyLevel,
                ["families_from"] = Options.CorpusDirectory is null ? "language catalog" : Path.GetFullPath(Options.CorpusDirectory),
                ["permutations"] = Options.Permutations,
                ["seed"] = Options.Seed,
                ["linkage"] = "average",
                ["distance"] = $"1 - {Options.Similarity}",
            },
            ["languages"] = Strings(languages),
            ["families"] = new JsonObject(languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)Families[i]))),
            ["findings"] = new JsonArray([.. findings.Select(f => (JsonNode)new JsonObject
            {
                ["key"] = f.Key,
                ["title"] = f.Title,
                ["reading"] = f.Reading,
                ["figures"] = Strings(f.Figures),
            })]),
            ["high_frequency"] = new JsonObject
            {
                ["per_layer"] = new JsonObject(languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)Ints(Sharing.HighPerLayer[i])))),
                ["thresholds"] = new JsonObject(languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)Numbers(Sharing.Thresholds[i])))),
                ["experts"] = new JsonObject(languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)new JsonArray([.. Sharing.High[i].Select(layer =>
                    (JsonNode)Ints([.. Enumerable.Range(0, layer.Length).Where(e => layer[e])]))])))),
            },
            ["shared"] = new JsonObject
            {
                ["all_languages_per_layer"] = Ints(Sharing.SharedByAllPerLayer),
                ["min_languages_per_layer"] = Ints(Sharing.SharedByMinPerLayer),
                ["languages_high"] = new JsonArray([.. Sharing.LanguagesHigh.Select(layer => (JsonNode)Ints(layer))]),
                ["all_languages"] = new JsonArray([.. Experts(n => n == languages.Count)]),
                ["min_languages"] = new JsonArray([.. Experts(n => n >= MinLanguages)]),
            },
            ["specific"] = new JsonObject
            {
                ["definition"] = "high-frequency in this language and in no other; ordered by normalised entropy of the expert's frequencies across languages (0 = one language only, 1 = equal everywhere)",
                ["entropy"] = new JsonArray([.. Sharing.Entropy.Select(layer => (JsonNode)Numbers(layer))]),
                ["per_layer"] = Ints(Sharing.SpecificPerLayer(Table.Layers)),
                ["languages"] = new JsonObject(languages.Select((code, i) => KeyValuePair.Create(code, (JsonNode?)new JsonArray([.. Sharing.Specific[i].Select(e => (JsonNode)new JsonObject
                {
                    ["layer"] = e.Layer,
                    ["expert"] = e.Expert,
                    ["frequency"] = Number(e.Frequency),
                    ["entropy"] = Number(e.Entropy),
                })])))),
            },
            ["similarity"] = new JsonObject
            {
                ["cosine"] = Matrix(Cosine),
                ["spearman"] = Matrix(Spearman),
            },
            ["clustering"] = new JsonObject
            {
                ["leaf_order"] = Strings([.. Dendrogram.LeafOrder.Select(i => languages[i])]),
                ["merges"] = new JsonArray([.. Dendrogram.Merges.Select(m => (JsonNode)new JsonObject
                {
                    ["left"] = m.Left,
                    ["right"] = m.Right,
                    ["height"] = Number(m.Height),
                    ["size"] = m.Size,
                })]),
                ["merge_ids"] = "SciPy linkage numbering: 0 … n−1 are the languages in 'languages' order, n + i the cluster made by merge i",
            },
            ["family_agreement"] = new JsonObject
            {
                ["cosine"] = Agreement(CosineAgreement),
                ["spearman"] = Agreement(SpearmanAgreement),
            },
        };

        IEnumerable<JsonNode> Experts(Func<int, bool> keep) =>
            Sharing.LanguagesHigh.SelectMany((layer, l) => Enumerable.Range(0, layer.Length).Where(e => keep(layer[e]))
                .Select(e => (JsonNode)new JsonObject { ["layer"] = l, ["expert"] = e }));
        JsonArray Matrix(double[,] m) => new([.. Enumerable.Range(0, languages.Count).Select(i => (JsonNode)Numbers([.. Enumerable.Range(0, languages.Count).Select(j => m[i, j])]))]);
        static JsonNode? Agreement(FamilyAgreement? a) => a is null ? null : new JsonObject
        {
            ["within_family"] = Number(a.WithinFamily),
            ["between_family"] = Number(a.BetweenFamily),
            ["score"] = Number(a.Score),
            ["p_value"] = Number(a.PValue),
            ["permutations"] = a.Permutations,
            ["seed"] = a.Seed,
            ["within_pairs"] = a.WithinPairs,
            ["between_pairs"] = a.BetweenPairs,
            ["languages"] = Strings(a.Languages),
            ["languages_without_family"] = Strings(a.LanguagesWithoutFamily),
        };
    }

    internal static JsonNode? Number(double value) => double.IsFinite(value) ? JsonValue.Create(Math.Round(value, 10)) : null;
    internal static JsonArray Numbers(IEnumerable<double> values) => new([.. values.Select(Number)]);
    internal static JsonArray Ints(IEnumerable<int> values) => new([.. values.Select(v => (JsonNode)v)]);
    internal static JsonArray Strings(IEnumerable<string> values) => new([.. values.Select(v => (JsonNode)v)]);
    internal static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string Capitalise(string text) => text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..];

    private static int ArgMax(double[] values) => Array.IndexOf(values, values.Max());
    private static int ArgMin(double[] values) => Array.IndexOf(values, values.Min());

    private static ((int I, int J) Min, (int I, int J) Max) Extremes(double[,] matrix)
    {
        var n = matrix.GetLength(0);
        (int, int) min = (0, 1), max = (0, 1);
        for (var i = 0; i < n; i++)
        {
            for (var j = i + 1; j < n; j++)
            {
                if (matrix[i, j] < matrix[min.Item1, min.Item2]) min = (i, j);
                if (matrix[i, j] > matrix[max.Item1, max.Item2]) max = (i, j);
            }
        }
        return (min, max);
    }
}
