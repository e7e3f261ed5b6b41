using System.Text.Json;
using Babel.Modeling.Reports;
using Babel.Modeling.Text2Tree;
using Xunit;

namespace Babel.UnitTests.Text2Tree;

/// <summary>The grid report's rows, their paired comparison with fine-tuning, and the exact sign-flip test.</summary>
public class GridReportTests
{
    [Fact]
    public void Five_positive_differences_give_p_2_over_32()
    {
        Assert.Equal(2 / 32.0, PairedSignFlipTest.PValue([0.01, 0.02, 0.03, 0.04, 0.05])!.Value, 12);
        Assert.Equal(2 / 32.0, PairedSignFlipTest.PValue([-0.1, -0.1, -0.1, -0.1, -0.1])!.Value, 12);
    }

    [Fact]
    public void Differences_that_are_all_zero_give_p_1()
    {
        Assert.Equal(1.0, PairedSignFlipTest.PValue([0, 0, 0, 0, 0])!.Value, 12);
        Assert.Equal(1.0, PairedSignFlipTest.PValue([])!.Value, 12);
    }

    [Fact]
    public void A_hand_worked_mixed_example()
    {
        // d = (3, 1, −1): |Σ| = 3. Flipping each subset S gives Σ − 2·Σ_S: S = {} 3, {1} −3, {2} 1, {3} 5, {1,2} −5, {1,3} −1,
        // {2,3} 3, {1,2,3} −3; |·| ≥ 3 for {}, {1}, {3}, {1,2}, {2,3}, {1,2,3}: 6 of 8.
        Assert.Equal(6 / 8.0, PairedSignFlipTest.PValue([3, 1, -1])!.Value, 12);
    }

    [Fact]
    public void The_p_value_matches_a_count_over_subsets_of_flipped_seeds()
    {
        var random = new Random(7);
        for (var trial = 0; trial < 40; trial++)
        {
            var n = 1 + trial % 8;
            // Multiples of 1/64 are exact in binary, so ties are exact in both computations.
            var d = Enumerable.Range(0, n).Select(_ => random.Next(-6, 7) / 64.0).ToArray();
            Assert.Equal(SubsetCount(d), PairedSignFlipTest.PValue(d)!.Value, 12);
        }
    }

    /// <summary>Independently: recurse over "flip seed i or not", carrying Σ − 2·Σ_flipped, and count the extreme leaves.</summary>
    private static double SubsetCount(double[] d)
    {
        var total = d.Sum();
        long Count(int i, double sum) => i == d.Length
            ? (Math.Abs(sum) >= Math.Abs(total) ? 1 : 0)
            : Count(i + 1, sum) + Count(i + 1, sum - 2 * d[i]);
        return Count(0, total) / Math.Pow(2, d.Length);
    }

    [Fact]
    public void Too_many_pairs_for_enumeration_give_no_p_value()
    {
        Assert.Null(PairedSignFlipTest.PValue(new double[PairedSignFlipTest.MaxExactPairs + 1]));
    }

    private static Text2TreeMetrics Metrics(string method, long seed, double macro, double micro, double lambda = 0.01, double tau = 1, double tail = 0)
    {
        BucketScore[] buckets = [new("head", "", 1, macro + 0.1), new("medium", "", 1, macro), new("tail", "", 1, tail)];
        var scores = new ClassificationScores(100, macro, micro, micro, buckets);
        return new Text2TreeMetrics(method, seed, lambda, tau, 10, scores, scores, 1, []);
    }

    private static GridReport Report() => new(new GridSetup("job", "data", new Text2TreeOptions()),
    [
        .. new[] { 1L, 2, 3, 4, 5 }.Select(s => Metrics(Text2TreeMethods.Finetune, s, 0.30 + s / 100.0, 0.60)),
        .. new[] { 1L, 2, 3, 4, 5 }.Select(s => Metrics(Text2TreeMethods.Text2Tree, s, 0.30 + s / 100.0 + 0.02, 0.60, lambda: 0)),
        .. new[] { 1L, 2, 3, 4, 5 }.Select(s => Metrics(Text2TreeMethods.Text2Tree, s, 0.30 + s / 100.0 - 0.01 * s, 0.55, lambda: 0.01, tail: s / 10.0)),
        .. new[] { 1L, 2, 3, 4, 5 }.Select(s => Metrics(Text2TreeMethods.Text2TreeSsl, s, 0.30, 0.60, lambda: 0.01)),
        // A focal row with seeds 4–6: only 4 and 5 pair with fine-tuning.
        .. new[] { 4L, 5, 6 }.Select(s => Metrics(Text2TreeMethods.Focal, s, 0.40, 0.70)),
    ]);

    [Fact]
    public void Rows_keep_lambda_and_tau_for_every_method_with_a_label_tree_and_compare_each_with_finetune_on_shared_seeds()
    {
        var rows = Report().Rows;
        Assert.Equal(["finetune", "text2tree λ=0 τ=1", "text2tree λ=0.01 τ=1", "text2tree-ssl λ=0.01 τ=1", "focal"], rows.Select(r => r.Label));
        Assert.Null(rows[0].VsFinetune);

        var dmlOnly = rows[1].VsFinetune!;
        Assert.Equal([1L, 2, 3, 4, 5], dmlOnly.Seeds);
        Assert.Equal(0.02, dmlOnly.MacroF1.MeanDifference, 12);
        Assert.Equal(2 / 32.0, dmlOnly.MacroF1.PValue!.Value, 12);
        Assert.Equal(0, dmlOnly.MicroF1.MeanDifference, 12);
        Assert.Equal(1.0, dmlOnly.MicroF1.PValue!.Value, 12);

        // Differences −0.01·s: all negative, mean −0.03.
        Assert.Equal(-0.03, rows[2].VsFinetune!.MacroF1.MeanDifference, 12);
        Assert.Equal(2 / 32.0, rows[2].VsFinetune!.MacroF1.PValue!.Value, 12);
        Assert.Equal(-0.05, rows[2].VsFinetune!.MicroF1.MeanDifference, 12);

        // SSL only: 0.30 against 0.31…0.35, differences −0.01·s.
        Assert.Equal(-0.03, rows[3].VsFinetune!.MacroF1.MeanDifference, 12);

        var focal = rows[4].VsFinetune!;
        Assert.Equal([4L, 5], focal.Seeds);
        Assert.Equal(0.40 - (0.34 + 0.35) / 2, focal.MacroF1.MeanDifference, 12);
        Assert.Equal(2 / 4.0, focal.MacroF1.PValue!.Value, 12);
    }

    [Fact]
    public void Bucket_scores_are_mean_and_sample_std_like_the_other_columns()
    {
        var row = Report().Rows[2];
        var tails = new[] { 0.1, 0.2, 0.3, 0.4, 0.5 };
        Assert.Equal(MeanStd.Of(tails), row.Buckets["tail"]);
        Assert.Equal(Math.Sqrt(tails.Sum(t => (t - 0.3) * (t - 0.3)) / 4), row.Buckets["tail"].Std, 12);
        Assert.Equal(MeanStd.Of([.. new[] { 1, 2, 3, 4, 5 }.Select(s => 0.30 + s / 100.0 - 0.01 * s)]).Std, row.MacroF1.Std, 12);
    }

    [Fact]
    public void The_tables_show_the_paired_columns_and_the_json_keeps_them_as_fields()
    {
        var report = Report();
        var markdown = report.Markdown();
        Assert.Contains("| Δ macro-F1 vs finetune | Δ micro-F1 vs finetune |", markdown);
        Assert.Contains("| text2tree λ=0 τ=1 | 5 |", markdown);
        Assert.Contains("+0.0200 (p = 0.0625)", markdown);
        Assert.Contains("-0.0300 (p = 0.0625)", markdown);
        Assert.Contains("sign-flip", markdown);

        using var scratch = new ScratchFolder();
        report.Save(scratch.Path);
        var html = File.ReadAllText(Path.Combine(scratch.Path, GridReport.HtmlFile));
        Assert.Contains("+0.0200 (p = 0.0625)", html);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(scratch.Path, GridReport.JsonFile)));
        var rows = json.RootElement.GetProperty("rows");
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("vs_finetune").ValueKind);
        var paired = rows[1].GetProperty("vs_finetune");
        Assert.Equal(0.0625, paired.GetProperty("macro_f1").GetProperty("p_value").GetDouble(), 12);
        Assert.Equal(0.02, paired.GetProperty("macro_f1").GetProperty("mean_difference").GetDouble(), 12);
        Assert.Equal(5, paired.GetProperty("seeds").GetArrayLength());
        Assert.Equal(0.01, rows[3].GetProperty("lambda").GetDouble(), 12);
    }
}
