using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Reports;
using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling.Experts;

/// <summary>Held-out perplexity of one language with every expert, and with top-K experts per router (K → perplexity).</summary>
public sealed record LanguageSparseCurves(string Language, double Dense, IReadOnlyDictionary<string, IReadOnlyDictionary<int, double>> Routers);

/// <summary>
/// Measured forward speed of the dense model and of centroid-routed sparse computation at each K, on this machine, and of
/// frequency-routed computation (one language's static top-K experts, the first language of the study) when it was scored.
/// </summary>
public sealed record SparseSpeed(double DenseTokensPerSecond, IReadOnlyDictionary<int, double> CentroidTokensPerSecond, string Machine,
    IReadOnlyDictionary<int, double>? FrequencyTokensPerSecond = null);

/// <summary>
/// <c>babel sparse</c>'s result (<c>sparse.json</c>, <c>sparse.md</c>, <c>sparse.png</c>): perplexity against the fraction
/// of FFN compute kept (K / E) per router, and the measured speed of the sparse computation.
/// </summary>
public sealed record SparseActivationCurves(string Model, string Split, int Experts, IReadOnlyList<int> TopK, IReadOnlyList<string> Routers,
    IReadOnlyList<LanguageSparseCurves> Languages, SparseSpeed Speed)
{
    public const string FileName = "sparse.json";
    public const string TableFileName = "sparse.md";
    public const string Image = "sparse.png";

    private static readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.Web) { WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Mean over languages of perplexity / dense perplexity.</summary>
    public double MeanRatio(string router, int k) => Languages.Average(l => l.Routers[router][k] / l.Dense);

    public string Reading()
    {
        var parts = new List<string>();
        foreach (var router in Routers)
        {
            var steps = string.Join(", ", TopK.Select(k => string.Create(CultureInfo.InvariantCulture, $"{(double)k / Experts:P0} → {MeanRatio(router, k):F2}×")));
            parts.Add($"{router} routing, compute kept → perplexity over dense: {steps}");
        }
        var speeds = string.Join(", ", TopK.Select(k => string.Create(CultureInfo.InvariantCulture, $"K={k} {Speed.CentroidTokensPerSecond[k] / Speed.DenseTokensPerSecond:F2}×")));
        parts.Add($"measured forward speed of centroid-routed sparse computation vs dense: {speeds}");
        if (Speed.FrequencyTokensPerSecond is { } frequency)
        {
            parts.Add("of frequency-routed computation: " + string.Join(", ", TopK.Select(k => string.Create(CultureInfo.InvariantCulture, $"K={k} {frequency[k] / Speed.DenseTokensPerSecond:F2}×"))));
        }
        var sentence = string.Join("; ", parts) + ".";
        return char.ToUpperInvariant(sentence[0]) + sentence[1..];
    }

    public string Table()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Held-out ({Split}) perplexity with top-K of {Experts} experts per token, model `{Model}`.\n\n{Reading()}\n\n| language | dense |");
        foreach (var router in Routers)
        {
            foreach (var k in TopK) text.Append(CultureInfo.InvariantCulture, $" {router} K={k} |");
        }
        text.Append("\n|---|---|").Append(string.Concat(Enumerable.Repeat("---|", Routers.Count * TopK.Count))).Append('\n');
        foreach (var language in Languages)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {language.Language} | {language.Dense:F2} |");
            foreach (var router in Routers)
            {
                foreach (var k in TopK) text.Append(CultureInfo.InvariantCulture, $" {language.Routers[router][k]:F2} |");
            }
            text.Append('\n');
        }
        text.Append(CultureInfo.InvariantCulture, $"\nForward speed on {Speed.Machine}: dense {Speed.DenseTokensPerSecond:N0} tokens/s");
        foreach (var k in TopK) text.Append(CultureInfo.InvariantCulture, $"; centroid K={k} {Speed.CentroidTokensPerSecond[k]:N0} tokens/s");
        foreach (var k in Speed.FrequencyTokensPerSecond is null ? [] : TopK) text.Append(CultureInfo.InvariantCulture, $"; frequency K={k} {Speed.FrequencyTokensPerSecond![k]:N0} tokens/s");
        return text.Append(".\n").ToString();
    }

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(new { Model, Split, Experts, TopK, Routers, reading = Reading(), Languages, Speed }, _json) + "\n");
        AtomicFile.WriteAllText(Path.Combine(directory, TableFileName), Table());
        var plot = new Plot();
        foreach (var router in Routers)
        {
            var line = plot.Add.Scatter(TopK.Select(k => (double)k / Experts).Append(1).ToArray(), TopK.Select(k => MeanRatio(router, k)).Append(1).ToArray());
            line.LegendText = router;
        }
        plot.Title(string.Create(CultureInfo.InvariantCulture, $"Top-K of {Experts} experts, mean over {Languages.Count} languages"));
        plot.XLabel("fraction of FFN compute kept (K / E)");
        plot.YLabel("perplexity / dense perplexity");
        plot.ShowLegend(Alignment.UpperRight);
        PlotFiles.SavePng(plot, Path.Combine(directory, Image), 640, 400);
    }

    /// <summary>The report section: the perplexity-vs-compute plot and the measured speeds; <paramref name="folder"/> is relative to the run.</summary>
    public ReportSection Section(string folder)
    {
        var frequency = Speed.FrequencyTokensPerSecond;
        var table = HtmlTable.Of(["K", "compute kept", .. Routers.Select(r => $"{r}: perplexity / dense"), "centroid: forward speed / dense", .. frequency is null ? Array.Empty<string>() : ["frequency: forward speed / dense"]],
            TopK.Select(k => (IEnumerable<string>)
            [
                k.ToString(CultureInfo.InvariantCulture), ((double)k / Experts).ToString("P0", CultureInfo.InvariantCulture),
                .. Routers.Select(r => string.Create(CultureInfo.InvariantCulture, $"{MeanRatio(r, k):F3}×")),
                string.Create(CultureInfo.InvariantCulture, $"{Speed.CentroidTokensPerSecond[k] / Speed.DenseTokensPerSecond:F2}×"),
                .. frequency is null ? Array.Empty<string>() : [string.Create(CultureInfo.InvariantCulture, $"{frequency[k] / Speed.DenseTokensPerSecond:F2}×")],
            ]));
        table += string.Create(CultureInfo.InvariantCulture, $"<p>Dense forward: {Speed.DenseTokensPerSecond:N0} tokens/s on {System.Net.WebUtility.HtmlEncode(Speed.Machine)}.</p>");
        return new ReportSection("Sparse activation: top-K experts per token", Reading(), [Path.Combine(folder, Image)], table);
    }

    public static SparseActivationCurves Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; run 'babel sparse' first.");
        return JsonSerializer.Deserialize<SparseActivationCurves>(File.ReadAllText(path), _json) ?? throw new UserInputException($"{path} is not a sparse activation result.");
    }
}
