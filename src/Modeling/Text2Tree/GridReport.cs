using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Reports;
using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling.Text2Tree;

/// <summary>One row of the results table: a configuration (method, λ, τ) over its seeds, on the test split.</summary>
public sealed record GridRow(
    [property: JsonPropertyName("method")] string Method,
    [property: JsonPropertyName("lambda")] double? Lambda,
    [property: JsonPropertyName("tau")] double? Tau,
    [property: JsonPropertyName("seeds")] long[] Seeds,
    [property: JsonPropertyName("macro_f1")] MeanStd MacroF1,
    [property: JsonPropertyName("micro_f1")] MeanStd MicroF1,
    [property: JsonPropertyName("accuracy")] MeanStd Accuracy,
    [property: JsonPropertyName("buckets")] IReadOnlyDictionary<string, MeanStd> Buckets,
    [property: JsonPropertyName("vs_finetune")] FinetuneComparison? VsFinetune)
{
    public string Label => Lambda is null ? Method : string.Create(CultureInfo.InvariantCulture, $"{Method} λ={Lambda} τ={Tau}");
}

/// <summary>
/// A row against <c>finetune</c> over the seeds both ran: per-seed test differences (row − finetune) of macro- and
/// micro-F1, their mean and exact sign-flip p-value.
/// </summary>
public sealed record FinetuneComparison(
    [property: JsonPropertyName("seeds")] long[] Seeds,
    [property: JsonPropertyName("macro_f1")] PairedDifference MacroF1,
    [property: JsonPropertyName("micro_f1")] PairedDifference MicroF1)
{
    /// <summary>The comparison of <paramref name="runs"/> with <paramref name="finetune"/> on shared seeds, or null if they share none.</summary>
    public static FinetuneComparison? Of(IReadOnlyList<Text2TreeMetrics> runs, IReadOnlyList<Text2TreeMetrics> finetune)
    {
        var baseline = finetune.GroupBy(r => r.Seed).ToDictionary(g => g.Key, g => g.First());
        var pairs = runs.Where(r => baseline.ContainsKey(r.Seed)).GroupBy(r => r.Seed).Select(g => (Run: g.First(), Baseline: baseline[g.Key])).OrderBy(p => p.Run.Seed).ToList();
        if (pairs.Count == 0) return null;
        return new FinetuneComparison([.. pairs.Select(p => p.Run.Seed)],
            PairedDifference.Of([.. pairs.Select(p => p.Run.Test.MacroF1 - p.Baseline.Test.MacroF1)]),
            PairedDifference.Of([.. pairs.Select(p => p.Run.Test.MicroF1 - p.Baseline.Test.MicroF1)]));
    }

    /// <summary>A table cell for <paramref name="difference"/>: signed mean difference and p.</summary>
    public static string Cell(PairedDifference? difference) => difference is null
        ? "–"
        : string.Create(CultureInfo.InvariantCulture, $"{difference.MeanDifference:+0.0000;-0.0000;0.0000} (p = {(difference.PValue is { } p ? p.ToString("0.####", CultureInfo.InvariantCulture) : "–")})");
}

/// <summary>What a grid ran: its job, the dataset folder it was uploaded from, and the options every run shares.</summary>
public sealed record GridSetup(
    [property: JsonPropertyName("job")] string Job,
    [property: JsonPropertyName("data")] string Data,
    [property: JsonPropertyName("options")] Text2TreeOptions Options);

/// <summary>
/// The results of a grid, from its setup and every run's metrics in plan order: <c>results.json</c> (setup, rows and
/// every run), <c>results.md</c> and <c>results.html</c> (mean ± std over seeds of test scores) and <c>buckets.png</c>
/// (test macro-F1 per label-frequency bucket).
/// </summary>
public sealed record GridReport(GridSetup Setup, IReadOnlyList<Text2TreeMetrics> Runs)
{
    public const string JsonFile = "results.json";
    public const string MarkdownFile = "results.md";
    public const string HtmlFile = "results.html";
    public const string PlotFile = "buckets.png";

    private const string PairedNote = "Δ vs finetune: mean over the seeds both ran of (row − finetune) on the test split; p = exact two-sided sign-flip permutation test over all 2^n sign assignments of the per-seed differences (n = 5 seeds: the smallest possible p is 2/32 = 0.0625).";

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary><c>results.json</c>.</summary>
    private sealed record ResultsFile(
        [property: JsonPropertyName("setup")] GridSetup Setup,
        [property: JsonPropertyName("rows")] IReadOnlyList<GridRow> Rows,
        [property: JsonPropertyName("runs")] IReadOnlyList<Text2TreeMetrics> Runs);

    /// <summary>
    /// The configurations: runs grouped by (method, λ, τ) — λ and τ only for the methods with a label tree — in first-seen
    /// order; every row but <c>finetune</c>'s is compared with <c>finetune</c> on the seeds both ran.
    /// </summary>
    public IReadOnlyList<GridRow> Rows
    {
        get
        {
            var finetune = Runs.Where(r => r.Method == Text2TreeMethods.Finetune).ToList();
            return [.. Runs.GroupBy(r => Text2TreeMethods.UsesLabelTree(r.Method) ? (r.Method, (double?)r.Lambda, (double?)r.Tau) : (r.Method, null, null))
                .Select(g =>
                {
                    var list = g.ToList();
                    var buckets = ClassificationMetrics.BucketNames.ToDictionary(b => b,
                        b => MeanStd.Of([.. list.Select(r => r.Test.Buckets.First(x => x.Name == b).MacroF1)]), StringComparer.Ordinal);
                    return new GridRow(g.Key.Method, g.Key.Item2, g.Key.Item3, [.. list.Select(r => r.Seed)],
                        MeanStd.Of([.. list.Select(r => r.Test.MacroF1)]), MeanStd.Of([.. list.Select(r => r.Test.MicroF1)]),
                        MeanStd.Of([.. list.Select(r => r.Test.Accuracy)]), buckets,
                        g.Key.Method == Text2TreeMethods.Finetune ? null : FinetuneComparison.Of(list, finetune));
                })];
        }
    }

    /// <summary>Writes the four files into <paramref name="directory"/>, each atomically.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var rows = Rows;
        AtomicFile.WriteAllText(Path.Combine(directory, JsonFile), JsonSerializer.Serialize(new ResultsFile(Setup, rows, Runs), _indented));
        AtomicFile.WriteAllText(Path.Combine(directory, MarkdownFile), Markdown(rows));
        AtomicFile.WriteAllText(Path.Combine(directory, HtmlFile), Html(rows));
        Plot(rows, Path.Combine(directory, PlotFile));
    }

    /// <summary>The results table as Markdown (what <c>results.md</c> holds).</summary>
    public string Markdown() => Markdown(Rows);

    private string Markdown(IReadOnlyList<GridRow> rows)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"Test scores, mean ± std over seeds ({Runs.Count} runs); checkpoint selected on validation macro-F1.");
        text.AppendLine();
        text.AppendLine("| method | seeds | macro-F1 | micro-F1 | accuracy | head F1 | medium F1 | tail F1 | Δ macro-F1 vs finetune | Δ micro-F1 vs finetune |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {row.Label} | {row.Seeds.Length} | {row.MacroF1} | {row.MicroF1} | {row.Accuracy} | {row.Buckets["head"]} | {row.Buckets["medium"]} | {row.Buckets["tail"]} | {FinetuneComparison.Cell(row.VsFinetune?.MacroF1)} | {FinetuneComparison.Cell(row.VsFinetune?.MicroF1)} |");
        }
        text.AppendLine();
        text.AppendLine(string.Join("; ", ClassificationMetrics.BucketNames.Select(b => $"{b}: {ClassificationMetrics.BucketRule(b)}")) + " (macro-F1 over the bucket's labels).");
        text.AppendLine(PairedNote);
        return text.ToString();
    }

    private string Html(IReadOnlyList<GridRow> rows)
    {
        var html = new StringBuilder();
        html.AppendLine("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Text2Tree grid</title>");
        html.AppendLine("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>");
        html.AppendLine("<section id=\"text2tree\"><h2>Text2Tree: hierarchy-aware classification</h2>");
        html.AppendLine(CultureInfo.InvariantCulture, $"<p>Test scores, mean ± std over seeds ({Runs.Count} runs); checkpoint selected on validation macro-F1.</p>");
        html.AppendLine(HtmlTable.Of(["method", "seeds", "macro-F1", "micro-F1", "accuracy", "head F1", "medium F1", "tail F1", "Δ macro-F1 vs finetune", "Δ micro-F1 vs finetune"], rows.Select(row => (IEnumerable<string>)
        [
            row.Label, row.Seeds.Length.ToString(CultureInfo.InvariantCulture), row.MacroF1.ToString(), row.MicroF1.ToString(), row.Accuracy.ToString(),
            row.Buckets["head"].ToString(), row.Buckets["medium"].ToString(), row.Buckets["tail"].ToString(),
            FinetuneComparison.Cell(row.VsFinetune?.MacroF1), FinetuneComparison.Cell(row.VsFinetune?.MicroF1),
        ])));
        html.AppendLine(CultureInfo.InvariantCulture, $"<p>{WebUtility.HtmlEncode(string.Join("; ", ClassificationMetrics.BucketNames.Select(b => $"{b}: {ClassificationMetrics.BucketRule(b)}")))}.</p>");
        html.AppendLine(CultureInfo.InvariantCulture, $"<p>{WebUtility.HtmlEncode(PairedNote)}</p>");
        html.AppendLine(CultureInfo.InvariantCulture, $"<img src=\"{PlotFile}\" alt=\"test macro-F1 per label-frequency bucket\"></section></body></html>");
        return html.ToString();
    }

    /// <summary>Grouped bars: one group per bucket, one bar per configuration, error bars = std over seeds.</summary>
    private static void Plot(IReadOnlyList<GridRow> rows, string path)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var buckets = ClassificationMetrics.BucketNames;
        var width = 0.8 / Math.Max(1, rows.Count);
        for (var r = 0; r < rows.Count; r++)
        {
            var bars = buckets.Select((b, i) => new Bar
            {
                Position = i + (r - (rows.Count - 1) / 2.0) * width,
                Value = rows[r].Buckets[b].Mean,
                Error = rows[r].Buckets[b].Std,
                Size = width * 0.9,
                FillColor = palette.GetColor(r),
            }).ToList();
            var series = plot.Add.Bars(bars);
            series.LegendText = rows[r].Label;
        }
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (var i = 0; i < buckets.Count; i++) ticks.AddMajor(i, $"{buckets[i]} ({ClassificationMetrics.BucketRule(buckets[i])})");
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("test macro-F1");
        plot.Title("Macro-F1 by label frequency (mean ± std over seeds)");
        plot.ShowLegend(Alignment.UpperRight);
        PlotFiles.SavePng(plot, path, 900, 480);
    }
}
