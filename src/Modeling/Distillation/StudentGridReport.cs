using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Reports;
using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling.Distillation;

/// <summary>
/// One row of the student results table: a configuration (setting, labels, student, the optimizer steps of its two stages
/// and, for an <c>-se</c> setting, the <see cref="StudentBudgets"/> they came from) over its seeds.
/// </summary>
public sealed record StudentGridRow(
    [property: JsonPropertyName("setting")] string Setting,
    [property: JsonPropertyName("labels")] string Labels,
    [property: JsonPropertyName("student")] string Student,
    [property: JsonPropertyName("self_evaluation_steps")] int SelfEvaluationSteps,
    [property: JsonPropertyName("distillation_steps")] int DistillationSteps,
    [property: JsonPropertyName("budget")] string? Budget,
    [property: JsonPropertyName("seeds")] long[] Seeds,
    [property: JsonPropertyName("test_accuracy")] MeanStd TestAccuracy,
    [property: JsonPropertyName("validation_accuracy")] double ValidationAccuracy,
    [property: JsonPropertyName("rationale_accuracy")] double? RationaleAccuracy)
{
    /// <summary>The series a row belongs to in the plot: its label source and student.</summary>
    [JsonIgnore]
    public string Series => $"{Labels}, {Student}";
}

/// <summary>What a grid ran on: its job, the distillation folder and test split, the students, and the options every run shares.</summary>
public sealed record StudentGridSetup(
    [property: JsonPropertyName("job")] string Job,
    [property: JsonPropertyName("data")] string Data,
    [property: JsonPropertyName("test")] string Test,
    [property: JsonPropertyName("students"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<string>? Students,
    [property: JsonPropertyName("options")] StudentOptions Options);

/// <summary>
/// The results of a student grid ("Mind's Mirror" ablation): <c>results.json</c> (rows and every run's metrics),
/// <c>results.md</c> and <c>results.html</c> (test accuracy mean ± sample std over seeds, validation and own-rationale
/// accuracy means) and <c>accuracy.png</c> (mean test accuracy per setting, one bar series per label source and student,
/// error bars = std over seeds). <see cref="Section"/> joins the grid to a report with a reading computed from the numbers.
/// </summary>
public sealed record StudentGridReport(
    [property: JsonPropertyName("rows")] IReadOnlyList<StudentGridRow> Rows,
    [property: JsonPropertyName("runs")] IReadOnlyList<StudentMetrics> Runs,
    [property: JsonPropertyName("setup")] StudentGridSetup? Setup = null)
{
    public const string JsonFile = "results.json";
    public const string MarkdownFile = "results.md";
    public const string HtmlFile = "results.html";
    public const string PlotFile = "accuracy.png";

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A student's short name: the preset, or <c>model-</c> and the first 8 hex digits of an uploaded folder's artifact key.</summary>
    public static string StudentName(string student)
    {
        if (!student.Contains('/', StringComparison.Ordinal)) return student;
        var hash = student[(student.LastIndexOf('/') + 1)..];
        return "model-" + hash[..Math.Min(8, hash.Length)];
    }

    /// <summary>Groups runs by (setting, labels, student, steps of each stage, budget of an <c>-se</c> setting) in first-seen order.</summary>
    public static StudentGridReport From(IReadOnlyList<StudentMetrics> runs)
    {
        if (runs.Count == 0) throw new UserInputException("The student grid has no runs to report; give at least one setting, label source, student and seed.");
        IReadOnlyList<StudentGridRow> rows = [.. runs.GroupBy(r => (r.Options.Setting, r.Options.Labels, r.Options.Student, r.Options.SelfEvaluationStageSteps,
            r.Options.DistillationStageSteps, Budget: StudentSettings.UsesSelfEvaluation(r.Options.Setting) ? r.Options.Budget : null)).Select(g =>
        {
            var list = g.ToList();
            var rationales = list.Where(r => r.TestRationaleAccuracy is not null).Select(r => r.TestRationaleAccuracy!.Value).ToList();
            return new StudentGridRow(g.Key.Setting, g.Key.Labels, StudentName(g.Key.Student), g.Key.SelfEvaluationStageSteps, g.Key.DistillationStageSteps, g.Key.Budget,
                [.. list.Select(r => r.Options.Seed)],
                MeanStd.Of([.. list.Select(r => r.TestAccuracy)]), list.Average(r => r.ValidationAccuracy),
                rationales.Count > 0 ? rationales.Average() : null);
        })];
        return new StudentGridReport(rows, runs);
    }

    /// <summary>Writes the four files into <paramref name="directory"/> with <see cref="Setup"/> recorded in <c>results.json</c>.</summary>
    public void Save(string directory) => Save(directory, Setup);

    /// <summary>The report of <paramref name="runs"/>, written into <paramref name="directory"/> with a caller's own <paramref name="setup"/> record.</summary>
    public static StudentGridReport Write(string directory, IReadOnlyList<StudentMetrics> runs, object? setup = null)
    {
        var report = From(runs);
        report.Save(directory, setup);
        return report;
    }

    /// <summary>
    /// Writes the four files into <paramref name="directory"/>, each atomically, <c>results.json</c> last: a folder with
    /// <c>results.json</c> holds a complete report.
    /// </summary>
    private void Save(string directory, object? setup)
    {
        Directory.CreateDirectory(directory);
        Plot(Path.Combine(directory, PlotFile));
        AtomicFile.WriteAllText(Path.Combine(directory, MarkdownFile), Markdown());
        AtomicFile.WriteAllText(Path.Combine(directory, HtmlFile), Html());
        AtomicFile.WriteAllText(Path.Combine(directory, JsonFile), JsonSerializer.Serialize(new ResultsFile(setup, Reading(), Rows, Runs), _indented));
    }

    /// <summary><c>results.json</c>: the setup, the reading, the rows and every run's metrics.</summary>
    private sealed record ResultsFile(
        [property: JsonPropertyName("setup")] object? Setup,
        [property: JsonPropertyName("reading")] string Reading,
        [property: JsonPropertyName("rows")] IReadOnlyList<StudentGridRow> Rows,
        [property: JsonPropertyName("runs")] IReadOnlyList<StudentMetrics> Runs);

    public static StudentGridReport Load(string directory)
    {
        var path = Path.Combine(directory, JsonFile);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; run 'babel distill grid' first.");
        try
        {
            return JsonSerializer.Deserialize<StudentGridReport>(File.ReadAllText(path), _indented) is { Rows: not null, Runs: not null } report
                ? report
                : throw new UserInputException($"{path} is not a student grid result; run 'babel distill grid' again.");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not a valid student grid result ({e.Message}); run 'babel distill grid' again.", e);
        }
    }

    private string Caption => string.Create(CultureInfo.InvariantCulture,
        $"Test accuracy (exact match of the predict: answer), mean ± sample std over seeds ({Runs.Count} runs); checkpoint chosen on validation accuracy (validation carved from train). {BudgetText}");

    /// <summary>Which step budget the <c>-se</c> rows used: extra (the paper's) or matched, as the steps column shows.</summary>
    private string BudgetText
    {
        get
        {
            var budgets = Rows.Where(r => r.Budget is not null).Select(r => r.Budget!).Distinct(StringComparer.Ordinal).ToList();
            if (budgets.Count == 0) return "Steps: stage 2 only (no -se setting).";
            return "Steps of the -se settings: " + string.Join(" and ", budgets.Select(b => b == StudentBudgets.Extra
                ? "budget extra (the paper's: the self-evaluation steps on top of the distillation steps)"
                : "budget matched (both stages together take the steps of a setting without self-evaluation)")) + ".";
        }
    }

    private static string Steps(StudentGridRow row) => row.SelfEvaluationSteps > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{row.SelfEvaluationSteps} + {row.DistillationSteps} ({row.Budget})")
        : row.DistillationSteps.ToString(CultureInfo.InvariantCulture);

    public string Markdown()
    {
        var text = new StringBuilder();
        text.AppendLine(Caption);
        text.AppendLine();
        text.AppendLine("| setting | labels | student | steps (stage 1 + 2) | n | test accuracy | validation accuracy | own-rationale accuracy |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var row in Rows)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {row.Setting} | {row.Labels} | {row.Student} | {Steps(row)} | {row.Seeds.Length} | {row.TestAccuracy} | {row.ValidationAccuracy:F4} | {Optional(row.RationaleAccuracy)} |");
        }
        text.AppendLine();
        text.AppendLine(Reading());
        return text.ToString();
    }

    public string Html()
    {
        var html = new StringBuilder();
        html.AppendLine("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Student distillation grid</title>");
        html.AppendLine("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>");
        html.AppendLine("<section id=\"students\"><h2>Student distillation: the ablation grid</h2>");
        html.AppendLine(CultureInfo.InvariantCulture, $"<p>{WebUtility.HtmlEncode(Caption)}</p>");
        html.AppendLine(Table());
        html.AppendLine(CultureInfo.InvariantCulture, $"<p>{WebUtility.HtmlEncode(Reading())}</p>");
        html.AppendLine(CultureInfo.InvariantCulture, $"<img src=\"{PlotFile}\" alt=\"mean test accuracy per setting\"></section></body></html>");
        return html.ToString();
    }

    private string Table()
    {
        return HtmlTable.Of(["setting", "labels", "student", "steps (stage 1 + 2)", "n", "test accuracy", "validation accuracy", "own-rationale accuracy"], Rows.Select(row => (IEnumerable<string>)
        [
            row.Setting, row.Labels, row.Student, Steps(row), row.Seeds.Length.ToString(CultureInfo.InvariantCulture), row.TestAccuracy.ToString(),
            row.ValidationAccuracy.ToString("F4", CultureInfo.InvariantCulture), Optional(row.RationaleAccuracy),
        ]));
    }

    private static string Optional(double? value) => value is { } v ? v.ToString("F4", CultureInfo.InvariantCulture) : "–";

    /// <summary>
    /// One honest sentence: the fullest distillation setting in the grid (multi-cot-se, else multi-cot, cot-se, cot)
    /// against standard fine-tuning, as the mean over (labels, student) pairs of the difference of mean test accuracy,
    /// in percentage points; "within the spread" when the difference is smaller than the larger std over seeds.
    /// </summary>
    public string Reading()
    {
        var settings = Rows.Select(r => r.Setting).Distinct(StringComparer.Ordinal).ToList();
        var best = Rows.MaxBy(r => r.TestAccuracy.Mean)!;
        var bestText = string.Create(CultureInfo.InvariantCulture,
            $"the best configuration is {best.Setting} ({best.Series}) at {best.TestAccuracy.Mean * 100:F1}% mean test accuracy");
        var candidate = new[] { StudentSettings.MultiCotSelfEvaluation, StudentSettings.MultiCot, StudentSettings.CotSelfEvaluation, StudentSettings.Cot }
            .FirstOrDefault(settings.Contains);
        if (!settings.Contains(StudentSettings.Standard) || candidate is null)
        {
            return $"The grid has no {(candidate is null ? "chain-of-thought setting" : "standard fine-tuning baseline")} to compare against; {bestText}.";
        }
        var pairs = Rows.Where(r => r.Setting == candidate)
            .Select(c => (Candidate: c, Standard: Rows.FirstOrDefault(s => s.Setting == StudentSettings.Standard && s.Labels == c.Labels && s.Student == c.Student)))
            .Where(p => p.Standard is not null)
            .Select(p => (p.Candidate, Standard: p.Standard!))
            .ToList();
        if (pairs.Count == 0) return $"No (labels, student) pair has both {candidate} and standard runs; {bestText}.";
        var difference = pairs.Average(p => p.Candidate.TestAccuracy.Mean - p.Standard.TestAccuracy.Mean) * 100;
        var spread = pairs.Max(p => Math.Max(p.Candidate.TestAccuracy.Std, p.Standard.TestAccuracy.Std)) * 100;
        var seeds = pairs.Min(p => Math.Min(p.Candidate.Seeds.Length, p.Standard.Seeds.Length));
        var over = string.Create(CultureInfo.InvariantCulture,
            $"averaged over {seeds} seed{(seeds == 1 ? "" : "s")} and {pairs.Count} (labels, student) pair{(pairs.Count == 1 ? "" : "s")}");
        var verdict = difference > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{candidate} beats standard fine-tuning by {difference:F1} points of test accuracy {over}")
            : string.Create(CultureInfo.InvariantCulture, $"{candidate} does not beat standard fine-tuning ({difference:F1} points of test accuracy {over})");
        var caution = seeds < 2
            ? " (one seed: no spread to judge it by)"
            : Math.Abs(difference) <= spread
                ? string.Create(CultureInfo.InvariantCulture, $", within the spread over seeds (std up to {spread:F1} points)")
                : string.Create(CultureInfo.InvariantCulture, $", more than the spread over seeds (std up to {spread:F1} points)");
        return char.ToUpperInvariant(verdict[0]) + verdict[1..] + caution + "; " + bestText + ".";
    }

    /// <summary>Grouped bars: one group per setting, one bar per (labels, student), error bars = std over seeds.</summary>
    public void Plot(string path)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var settings = StudentSettings.All.Where(s => Rows.Any(r => r.Setting == s)).ToList();
        var series = Rows.Select(r => r.Series).Distinct(StringComparer.Ordinal).ToList();
        var width = 0.8 / Math.Max(1, series.Count);
        for (var s = 0; s < series.Count; s++)
        {
            var bars = new List<Bar>();
            for (var i = 0; i < settings.Count; i++)
            {
                if (Rows.FirstOrDefault(r => r.Series == series[s] && r.Setting == settings[i]) is not { } row) continue;
                bars.Add(new Bar
                {
                    Position = i + (s - (series.Count - 1) / 2.0) * width,
                    Value = row.TestAccuracy.Mean * 100,
                    Error = row.TestAccuracy.Std * 100,
                    Size = width * 0.9,
                    FillColor = palette.GetColor(s),
                });
            }
            plot.Add.Bars(bars).LegendText = series[s];
        }
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (var i = 0; i < settings.Count; i++) ticks.AddMajor(i, settings[i]);
        plot.Axes.Bottom.TickGenerator = ticks;
        // Accuracy lies in [0, 100]: error bars are clipped there rather than drawn below zero.
        var top = Rows.Max(r => r.TestAccuracy.Mean + r.TestAccuracy.Std) * 100;
        plot.Axes.SetLimitsY(0, Math.Clamp(top * 1.15, 5, 100));
        plot.YLabel("test accuracy (%)");
        plot.Title("Student test accuracy by setting (mean ± std over seeds)");
        plot.ShowLegend(Alignment.UpperLeft);
        PlotFiles.SavePng(plot, path, 900, 480);
    }

    /// <summary>The grid as a report section; <paramref name="folder"/> is the grid's output folder relative to the report's folder.</summary>
    public ReportSection Section(string folder) =>
        new("Student distillation: the ablation grid", Reading(), [Path.Combine(folder, PlotFile)],
            Table() + $"<p>{WebUtility.HtmlEncode(Caption)}</p>");
}
