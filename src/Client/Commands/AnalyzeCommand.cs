using System.CommandLine;
using Babel.Modeling.Analysis;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel analyze --run RUN_DIR</c> (high-frequency, shared and language-specific experts, language similarity,
/// clustering and family agreement) and <c>babel analyze --compare RUN_A RUN_B</c> (differences of two runs).
/// </summary>
internal static class AnalyzeCommand
{
    public static Command Create()
    {
        var defaults = new AnalysisOptions();
        var run = new Option<string?>("--run") { Description = "Run folder written by 'babel profile'; the analyses go to RUN_DIR/analysis/ and into its report.html." };
        var compare = new Option<string[]?>("--compare") { Description = "Two run folders RUN_A RUN_B: differences of activation frequency, B − A.", Arity = new ArgumentArity(2, 2), AllowMultipleArgumentsPerToken = true };
        var output = new Option<string?>("--out") { Description = "With --compare: output folder (default RUN_B/comparison, which RUN_B's report.html shows)." };
        var bar = new Option<string>("--bar") { Description = $"High-frequency bar: an activation frequency in (0, 1) such as 0.3, or mean+Ksd (above the layer's mean by K standard deviations).", DefaultValueFactory = _ => defaults.Bar };
        var minLanguages = new Option<int?>("--min-languages") { Description = "'Shared' also counts experts high-frequency in at least N languages (default: half the languages, rounded up)." };
        var similarity = new Option<string>("--similarity") { Description = "Similarity for clustering and the family score: cosine or spearman (both are reported).", DefaultValueFactory = _ => defaults.Similarity };
        similarity.AcceptOnlyFromAmong([.. LanguageSimilarity.Measures]);
        var familyLevel = new Option<string>("--family-level") { Description = "family (e.g. Indo-European) or branch (e.g. Indo-European / Romance).", DefaultValueFactory = _ => defaults.FamilyLevel };
        familyLevel.AcceptOnlyFromAmong([.. LanguageFamilies.Levels]);
        var corpus = new Option<string?>("--corpus") { Description = "Corpus folder whose corpus.json gives the families (default: the run's corpus if its folder exists, else the built-in language catalog)." };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes to analyse (default: every language of the run)." };
        var seed = new Option<long>("--seed") { Description = "Seed of the permutation test (recorded in analysis.json).", DefaultValueFactory = _ => defaults.Seed };
        var permutations = new Option<int>("--permutations") { Description = "Family-label permutations for the p-value.", DefaultValueFactory = _ => defaults.Permutations };
        var command = new Command("analyze", "Analyse expert activations: high-frequency, shared and language-specific experts, language similarity and families; or compare two runs.")
        {
            run, compare, output, bar, minLanguages, similarity, familyLevel, corpus, languages, seed, permutations,
        };
        command.SetAction(parse =>
        {
            var runDirectory = parse.GetValue(run);
            // An absent option parses as an empty array.
            var pair = parse.GetValue(compare) is { Length: > 0 } given ? given : null;
            if ((runDirectory is null) == (pair is null))
            {
                throw new UserInputException("give either --run RUN_DIR or --compare RUN_A RUN_B.");
            }
            if (pair is null && parse.GetValue(output) is not null)
            {
                throw new UserInputException("--out goes with --compare; the analyses of --run are written to RUN_DIR/analysis/.");
            }
            var codes = parse.GetValue(languages)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal).ToList();
            var outcome = pair is not null
                ? ProfileRunAnalysis.Compare(pair[0], pair[1], parse.GetValue(output))
                : ProfileRunAnalysis.Analyze(runDirectory!, defaults with
                {
                    Bar = parse.GetValue(bar)!,
                    MinLanguages = parse.GetValue(minLanguages),
                    Similarity = parse.GetValue(similarity)!,
                    FamilyLevel = parse.GetValue(familyLevel)!,
                    CorpusDirectory = parse.GetValue(corpus),
                    Languages = codes is { Count: > 0 } ? codes : null,
                    Seed = parse.GetValue(seed),
                    Permutations = parse.GetValue(permutations),
                });
            foreach (var line in outcome.Lines()) parse.InvocationConfiguration.Output.WriteLine(line);
            return 0;
        });
        return command;
    }
}
