namespace Babel.Modeling.Analysis;

/// <summary>
/// How well activation similarity follows the known language families: mean similarity of pairs in the same family
/// minus mean similarity of pairs in different families, with a permutation p-value (family labels shuffled among the
/// languages, seeded; p = (1 + #permutations scoring ≥ observed) / (1 + permutations)).
/// </summary>
public sealed record FamilyAgreement(
    double WithinFamily,
    double BetweenFamily,
    double Score,
    double PValue,
    int Permutations,
    long Seed,
    int WithinPairs,
    int BetweenPairs,
    IReadOnlyList<string> Languages,
    IReadOnlyList<string> LanguagesWithoutFamily)
{
    /// <summary>Scores differing by less than this count as ties, so float noise cannot push a tie below the observed score.</summary>
    public const double Tolerance = 1e-12;

    /// <summary>
    /// The agreement of <paramref name="similarity"/> (over <paramref name="languages"/>) with <paramref name="families"/>
    /// (null or empty = unknown: such languages are left out). Null when the known families give no within-family pair
    /// or no between-family pair, so there is nothing to compare.
    /// </summary>
    public static FamilyAgreement? Compute(double[,] similarity, IReadOnlyList<string> languages, IReadOnlyList<string?> families, int permutations, long seed)
    {
        var known = Enumerable.Range(0, languages.Count).Where(i => !string.IsNullOrEmpty(families[i])).ToArray();
        var without = Enumerable.Range(0, languages.Count).Where(i => string.IsNullOrEmpty(families[i])).Select(i => languages[i]).ToList();
        var labels = known.Select(i => families[i]!).ToArray();
        var (within, between, withinPairs, betweenPairs) = Means(similarity, known, labels);
        if (withinPairs == 0 || betweenPairs == 0) return null;
        var observed = within - between;
        var random = new Random(unchecked((int)(seed ^ (seed >>> 32))));
        var shuffled = (string[])labels.Clone();
        var atLeast = 0;
        for (var p = 0; p < permutations; p++)
        {
            // Fisher–Yates: every arrangement of the labels equally likely; family sizes stay as they are.
            for (var i = shuffled.Length - 1; i > 0; i--)
            {
                var j = random.Next(i + 1);
                (shuffled[i], shuffled[j]) = (shuffled[j], shuffled[i]);
            }
            var (w, b, _, _) = Means(similarity, known, shuffled);
            if (w - b >= observed - Tolerance) atLeast++;
        }
        return new FamilyAgreement(within, between, observed, (1.0 + atLeast) / (1.0 + permutations), permutations, seed, withinPairs, betweenPairs,
            [.. known.Select(i => languages[i])], without);
    }

    private static (double Within, double Between, int WithinPairs, int BetweenPairs) Means(double[,] similarity, int[] indices, string[] labels)
    {
        double within = 0, between = 0;
        int withinPairs = 0, betweenPairs = 0;
        for (var x = 0; x < indices.Length; x++)
        {
            for (var y = x + 1; y < indices.Length; y++)
            {
                var s = similarity[indices[x], indices[y]];
                if (labels[x] == labels[y])
                {
                    within += s;
                    withinPairs++;
                }
                else
                {
                    between += s;
                    betweenPairs++;
                }
            }
        }
        return (withinPairs == 0 ? double.NaN : within / withinPairs, betweenPairs == 0 ? double.NaN : between / betweenPairs, withinPairs, betweenPairs);
    }
}
