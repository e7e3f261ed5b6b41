using System.Text.Json.Serialization;

namespace Babel.Modeling.Reports;

/// <summary>
/// A paired comparison over shared seeds: the mean of the per-seed differences (a − b) and the exact two-sided sign-flip
/// permutation p-value, or null when more seeds than <see cref="PairedSignFlipTest.MaxExactPairs"/> make enumeration too long.
/// </summary>
public sealed record PairedDifference(
    [property: JsonPropertyName("mean_difference")] double MeanDifference,
    [property: JsonPropertyName("p_value")] double? PValue)
{
    /// <summary>The differences' mean and exact sign-flip p-value.</summary>
    public static PairedDifference Of(IReadOnlyList<double> differences) =>
        new(differences.Count == 0 ? 0 : differences.Average(), PairedSignFlipTest.PValue(differences));
}

/// <summary>
/// The exact sign-flip (paired permutation) test: under the null hypothesis each per-seed difference is as likely to have
/// either sign, so the p-value is the share of all 2^n sign assignments whose |Σ s_i d_i| reaches the observed |Σ d_i|.
/// </summary>
public static class PairedSignFlipTest
{
    /// <summary>Above this many pairs the 2^n enumeration is not attempted (2^20 ≈ 10⁶ assignments).</summary>
    public const int MaxExactPairs = 20;

    /// <summary>The exact two-sided p-value; 1 for no pairs, null above <see cref="MaxExactPairs"/> pairs.</summary>
    public static double? PValue(IReadOnlyList<double> differences)
    {
        var n = differences.Count;
        if (n > MaxExactPairs) return null;
        if (n == 0) return 1;
        var observed = Math.Abs(differences.Sum());
        // Sums of the same magnitudes in another order differ by rounding: count those within it as ties.
        var tolerance = 1e-9 * differences.Sum(Math.Abs);
        long extreme = 0;
        var assignments = 1L << n;
        for (long signs = 0; signs < assignments; signs++)
        {
            double sum = 0;
            for (var i = 0; i < n; i++) sum += (signs >> i & 1) == 0 ? differences[i] : -differences[i];
            if (Math.Abs(sum) >= observed - tolerance) extreme++;
        }
        return extreme / (double)assignments;
    }
}
