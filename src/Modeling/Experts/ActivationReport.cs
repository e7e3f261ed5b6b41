using System.Globalization;
using System.Net;
using System.Text;
using Babel.Modeling.Reports;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary><c>report.html</c>: one self-contained page (images embedded) with a run's heatmaps and per-language token counts.</summary>
public static class ActivationReport
{
    public const string FileName = "report.html";

    /// <summary>Writes the heatmaps and <c>report.html</c>; <paramref name="sections"/> follow the manifest table, before the heatmaps.</summary>
    public static string Write(string runDirectory, ActivationProfile profile, IReadOnlyDictionary<string, string> manifest, IReadOnlyList<ReportSection>? sections = null)
    {
        var images = Heatmaps.Write(profile, runDirectory);
        var html = new StringBuilder();
        html.Append("<!doctype html><html><head><meta charset=\"utf-8\"><title>Babel expert activations</title>")
            .Append("<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}</style></head><body>")
            .Append("<h1>Expert activations per language</h1>")
            .Append(CultureInfo.InvariantCulture, $"<p>Model <code>{WebUtility.HtmlEncode(profile.Model)}</code>: {profile.Layers} layers × {profile.Experts} experts, rule <code>{WebUtility.HtmlEncode(profile.Rule)}</code>. ")
            .Append("Each cell is the fraction of a language's tokens for which the expert is active; every heatmap uses the same colour scale.</p>");
        html.Append("<table>");
        foreach (var (key, value) in manifest) html.Append(CultureInfo.InvariantCulture, $"<tr><th>{WebUtility.HtmlEncode(key)}</th><td>{WebUtility.HtmlEncode(value)}</td></tr>");
        html.Append("</table>");
        var ordered = images.OrderBy(i => i == "heatmaps.png" ? 0 : 1).ThenBy(i => i, StringComparer.Ordinal).ToList();
        foreach (var image in ordered.Take(1)) Heatmap(image);
        // Findings (analyses, pruning, ...) after the overview grid, before the per-language heatmaps.
        foreach (var section in sections ?? [])
        {
            html.Append(CultureInfo.InvariantCulture, $"<h2>{WebUtility.HtmlEncode(section.Title)}</h2><p>{WebUtility.HtmlEncode(section.Reading)}</p>");
            if (section.TableHtml is { } table) html.Append(table);
            foreach (var image in section.Images)
            {
                var file = Path.Combine(runDirectory, image);
                if (File.Exists(file)) Image(image, File.ReadAllBytes(file));
            }
        }
        foreach (var image in ordered.Skip(1)) Heatmap(image);
        html.Append("</body></html>\n");
        var path = Path.Combine(runDirectory, FileName);
        AtomicFile.WriteAllText(path, html.ToString());
        return path;

        void Heatmap(string image)
        {
            html.Append(CultureInfo.InvariantCulture, $"<h2>{WebUtility.HtmlEncode(image == "heatmaps.png" ? "All languages" : image[8..^4])}</h2>");
            Image(image, File.ReadAllBytes(Path.Combine(runDirectory, image)));
        }

        void Image(string name, byte[] bytes) =>
            html.Append(CultureInfo.InvariantCulture, $"<img alt=\"{WebUtility.HtmlEncode(name)}\" src=\"data:image/png;base64,{Convert.ToBase64String(bytes)}\">");
    }
}
