using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Reports;
using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling.Experts;

/// <summary>Held-out perplexity of one (strategy, rate): the mean over seeds, their standard deviation and every seed's value.</summary>
public sealed record PruningPoint(string Strategy, double Rate, double Perplexity, double StandardDeviation, IReadOnlyList<double> Seeds);

/// <summary>A language's lowest perplexity ratio pruned / unpruned at the low rates, and the (strategy, rate) that gave it.</summary>
public sealed record BestRatio(string Language, string Strategy, double Rate, double Ratio);

/// <summary>One language's pruning curves and its unpruned perplexity.</summary>
public sealed record LanguagePruningCurves(string Language, double Unpruned, IReadOnlyList<PruningPoint> Points)
{
    public PruningPoint? At(string strategy, double rate) => Points.FirstOrDefault(p => p.Strategy == strategy && p.Rate == rate);
}

/// <summary>
/// <c>babel eval-pruning</c>'s result (<c>pruning.json</c>, <c>pruning.md</c>, one line plot per language and a summary
/// plot): for every language, held-out perplexity against pruning rate per strategy.
/// </summary>
public sealed record PruningCurves(string Model, string Split, IReadOnlyList<double> Rates, IReadOnlyList<string> Strategies, IReadOnlyList<LanguagePruningCurves> Languages)
{
    public const string FileName = "pruning.json";
    public const string TableFileName = "pruning.md";
    public const string SummaryImage = "pruning-summary.png";

    private static readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.Web) { WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static string ImageOf(string language) => $"pruning-{language}.png";

    /// <summary>Mean over languages of perplexity / unpruned perplexity, per strategy and rate.</summary>
    public double MeanRatio(string strategy, double rate) =>
        Languages.Select(l => l.At(strategy, rate) is { } point ? point.Perplexity / l.Unpruned : double.NaN).Where(r => !double.IsNaN(r)).DefaultIfEmpty(double.NaN).Average();

    /// <summary>Over (language, rate) pairs: how often <paramref name="better"/> has the lower perplexity, how often both are equal (the same experts pruned).</summary>
    public (int Wins, int Ties, int Pairs) Wins(string better, string worse)
    {
        var pairs = Languages.SelectMany(l => Rates.Select(r => (A: l.At(better, r), B: l.At(worse, r)))).Where(p => p.A is not null && p.B is not null).ToList();
        return (pairs.Count(p => p.A!.Perplexity < p.B!.Perplexity), pairs.Count(p => p.A!.Perplexity == p.B!.Perplexity), pairs.Count);
    }

    /// <summary>The rates "low" for <see cref="BestRatios"/>: up to this one (the paper's pruned models beat the unpruned ones only at small rates).</summary>
    public const double LowRate = 0.2;

    /// <summary>
    /// Per language, the lowest perplexity ratio pruned / unpruned over every rate ≤ <see cref="LowRate"/> (the lowest rate
    /// when none is that low) and every strategy but random: does pruning ever beat the unpruned model ("even exceeded the
    /// unpruned model in some languages")?
    /// </summary>
    public IReadOnlyList<BestRatio> BestRatios()
    {
        var low = Rates.Where(r => r <= LowRate).DefaultIfEmpty(Rates.Min()).ToHashSet();
        return
        [
            .. Languages.Select(l => l.Points.Where(p => low.Contains(p.Rate) && p.Strategy != ExpertPruning.Random)
                .Select(p => new BestRatio(l.Language, p.Strategy, p.Rate, p.Perplexity / l.Unpruned))
                .OrderBy(b => b.Ratio).ThenBy(b => b.Rate).FirstOrDefault()).OfType<BestRatio>(),
        ];
    }

    /// <summary>One plain sentence of what the curves show.</summary>
    public string Reading()
    {
        var parts = new List<string>();
        var top = Rates.Max();
        void Compare(string a, string b, string claim)
        {
            if (!Strategies.Contains(a) || !Strategies.Contains(b)) return;
            var (wins, ties, pairs) = Wins(a, b);
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{claim} in {wins} of {pairs} (language, rate) pairs (equal in {ties}, worse in {pairs - wins - ties})"));
        }
        Compare(ExpertPruning.Frequency, ExpertPruning.Random, "frequency-guided pruning gives lower perplexity than random pruning");
        Compare(ExpertPruning.Layerwise, ExpertPruning.Frequency, "layer-wise rates from the activation spread beat uniform frequency-guided rates");
        Compare(ExpertPruning.Concentration, ExpertPruning.Frequency, "layer-wise rates from activation concentration beat uniform frequency-guided rates");
        var ratios = string.Join(", ", Strategies.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s} {MeanRatio(s, top):F2}×")));
        parts.Add(string.Create(CultureInfo.InvariantCulture, $"at rate {top} perplexity grows on average by {ratios} over the unpruned model"));
        if (BestRatios() is { Count: > 0 } best)
        {
            var below = best.Where(b => b.Ratio < 1).ToList();
            var lowest = best.MinBy(b => b.Ratio)!;
            parts.Add(string.Create(CultureInfo.InvariantCulture,
                $"at rates ≤ {Math.Max(LowRate, Rates.Min())} pruning beats the unpruned model in {below.Count} of {best.Count} languages (lowest ratio {lowest.Ratio:F4}, {lowest.Language} {lowest.Strategy} {lowest.Rate})"));
        }
        var sentence = string.Join("; ", parts) + ".";
        return char.ToUpperInvariant(sentence[0]) + sentence[1..];
    }

    /// <summary>Writes the JSON, the Markdown table and the plots into <paramref name="directory"/>; returns the image names.</summary>
    public IReadOnlyList<string> Save(string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(new { this.Model, this.Split, this.Rates, this.Strategies, reading = Reading(), this.Languages, bestRatios = BestRatios() }, _json) + "\n");
        AtomicFile.WriteAllText(Path.Combine(directory, TableFileName), Table());
        var images = new List<string> { SummaryImage };
        SavePlot(SummaryPlot(), Path.Combine(directory, SummaryImage));
        foreach (var language in Languages)
        {
            SavePlot(LanguagePlot(language), Path.Combine(directory, ImageOf(language.Language)));
            images.Add(ImageOf(language.Language));
        }
        return images;
    }

    /// <summary>Markdown: one row per language, one column per (strategy, rate), perplexity (± std over seeds).</summary>
    public string Table()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Held-out ({Split}) perplexity after pruning, model `{Model}`.\n\n{Reading()}\n\n| language | unpruned |");
        foreach (var strategy in Strategies)
        {
            foreach (var rate in Rates) text.Append(CultureInfo.InvariantCulture, $" {strategy} {rate} |");
        }
        text.Append("\n|---|---|").Append(string.Concat(Enumerable.Repeat("---|", Strategies.Count * Rates.Count))).Append('\n');
        foreach (var language in Languages)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {language.Language} | {language.Unpruned:F2} |");
            foreach (var strategy in Strategies)
            {
                foreach (var rate in Rates)
                {
                    var point = language.At(strategy, rate);
                    text.Append(point is null ? " – |" : point.Seeds.Count > 1
                        ? string.Create(CultureInfo.InvariantCulture, $" {point.Perplexity:F2} ± {point.StandardDeviation:F2} |")
                        : string.Create(CultureInfo.InvariantCulture, $" {point.Perplexity:F2} |"));
                }
            }
            text.Append('\n');
        }
        text.Append(CultureInfo.InvariantCulture, $"\nBest held-out perplexity ratio pruned / unpruned per language at rates ≤ {Math.Max(LowRate, Rates.Min())} (every strategy but random):\n\n| language | best ratio | strategy | rate |\n|---|---|---|---|\n");
        foreach (var best in BestRatios()) text.Append(CultureInfo.InvariantCulture, $"| {best.Language} | {best.Ratio:F4} | {best.Strategy} | {best.Rate} |\n");
        return text.ToString();
    }

    private Plot LanguagePlot(LanguagePruningCurves language)
    {
        var plot = new Plot();
        foreach (var strategy in Strategies)
        {
            var points = Rates.Select(r => language.At(strategy, r)).OfType<PruningPoint>().ToList();
            var xs = points.Select(p => p.Rate).Prepend(0).ToArray();
            var ys = points.Select(p => p.Perplexity).Prepend(language.Unpruned).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = strategy;
            line.Color = ColorOf(strategy);
            if (points.Any(p => p.Seeds.Count > 1))
            {
                var bars = plot.Add.ErrorBar(points.Select(p => p.Rate).ToArray(), points.Select(p => p.Perplexity).ToArray(), points.Select(p => p.StandardDeviation).ToArray());
                bars.Color = line.Color;
            }
        }
        plot.Title(string.Create(CultureInfo.InvariantCulture, $"{language.Language}: held-out perplexity vs pruning rate"));
        plot.XLabel("fraction of experts pruned per layer");
        plot.YLabel("perplexity");
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    private Plot SummaryPlot()
    {
        var plot = new Plot();
        foreach (var strategy in Strategies)
        {
            var line = plot.Add.Scatter(Rates.Prepend(0).ToArray(), Rates.Select(r => MeanRatio(strategy, r)).Prepend(1).ToArray());
            line.LegendText = strategy;
            line.Color = ColorOf(strategy);
        }
        plot.Title(string.Create(CultureInfo.InvariantCulture, $"Mean over {Languages.Count} languages: perplexity / unpruned perplexity"));
        plot.XLabel("fraction of experts pruned per layer");
        plot.YLabel("perplexity ratio");
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    // One colour per strategy in every plot, whatever else takes palette slots.
    private static Color ColorOf(string strategy) => new ScottPlot.Palettes.Category10().GetColor(Math.Max(0, ExpertPruning.Strategies.ToList().IndexOf(strategy)));

    private static void SavePlot(Plot plot, string path) => PlotFiles.SavePng(plot, path, 640, 400);

    /// <summary>The report section: the summary plot and a table of mean perplexity ratios per strategy and rate; <paramref name="folder"/> is relative to the run.</summary>
    public ReportSection Section(string folder)
    {
        var table = HtmlTable.Of(["strategy", .. Rates.Select(r => string.Create(CultureInfo.InvariantCulture, $"rate {r}"))],
            Strategies.Select(s => (IEnumerable<string>)[s, .. Rates.Select(r => string.Create(CultureInfo.InvariantCulture, $"{MeanRatio(s, r):F3}×"))]));
        table += string.Create(CultureInfo.InvariantCulture, $"<p>Mean over {Languages.Count} languages of perplexity / unpruned perplexity ({Split} split); per-language tables and plots in <code>{System.Net.WebUtility.HtmlEncode(folder)}/</code>.</p>");
        table += HtmlTable.Of(["language", string.Create(CultureInfo.InvariantCulture, $"best ratio to unpruned, rates ≤ {Math.Max(LowRate, Rates.Min())}"), "strategy", "rate"],
            BestRatios().Select(b => (IEnumerable<string>)[b.Language, b.Ratio.ToString("F4", CultureInfo.InvariantCulture), b.Strategy, b.Rate.ToString(CultureInfo.InvariantCulture)]));
        return new ReportSection("Expert pruning: frequency-guided vs random vs layer-wise", Reading(), [Path.Combine(folder, SummaryImage)], table);
    }

    public static PruningCurves Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; run 'babel eval-pruning' first.");
        return JsonSerializer.Deserialize<PruningCurves>(File.ReadAllText(path), _json)
            ?? throw new UserInputException($"{path} is not a pruning evaluation.");
    }
}
