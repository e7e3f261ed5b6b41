using System.Globalization;
using System.Text.Json.Nodes;
using Babel.Modeling.Reports;

namespace Babel.Modeling.Analysis;

/// <summary>The <c>report.html</c> sections of the analyses found in a run folder (<c>analysis/</c>, then every subfolder holding a <c>comparison.json</c>).</summary>
public static class AnalysisSections
{
    /// <summary>The sections of every analysis file present in <paramref name="runDirectory"/>; none when there is none.</summary>
    public static IReadOnlyList<ReportSection> Read(string runDirectory)
    {
        var sections = new List<ReportSection>();
        var analysis = ReadJson(Path.Combine(runDirectory, ExpertAnalysis.FolderName, ExpertAnalysis.FileName));
        if (analysis is not null) sections.AddRange(FromFindings(analysis, ExpertAnalysis.FolderName, key => key switch
        {
            "specific" => SpecificTable(analysis),
            "families" => FamilyTable(analysis),
            _ => null,
        }));
        // Every comparison written into this run (default RUN_B/comparison/, or any --out inside the run folder).
        foreach (var folder in Directory.EnumerateDirectories(runDirectory).Select(Path.GetFileName).Order(StringComparer.Ordinal))
        {
            var comparison = ReadJson(Path.Combine(runDirectory, folder!, ComparisonRun.FileName));
            if (comparison is not null) sections.AddRange(FromFindings(comparison, folder!, _ => null));
        }
        return sections;
    }

    private static IEnumerable<ReportSection> FromFindings(JsonObject json, string folder, Func<string, string?> table)
    {
        foreach (var finding in json["findings"]?.AsArray() ?? [])
        {
            if (finding is not JsonObject f) continue;
            var figures = f["figures"]?.AsArray().Select(x => Path.Combine(folder, x!.GetValue<string>())).ToList() ?? [];
            yield return new ReportSection(f["title"]?.GetValue<string>() ?? "", f["reading"]?.GetValue<string>() ?? "", figures, table(f["key"]?.GetValue<string>() ?? ""));
        }
    }

    private static string? SpecificTable(JsonObject analysis)
    {
        if (analysis["specific"]?["languages"] is not JsonObject languages) return null;
        return HtmlTable.Of(["language", "specific experts", "most specific (layer/expert, entropy)"], languages.Select(language =>
        {
            var experts = language.Value!.AsArray();
            var top = string.Join(", ", experts.Take(5).Select(e => string.Create(CultureInfo.InvariantCulture,
                $"L{e!["layer"]}/E{e["expert"]} ({(e["entropy"] is { } h ? h.GetValue<double>().ToString("0.###", CultureInfo.InvariantCulture) : "–")})")));
            return (IEnumerable<string>)[language.Key, experts.Count.ToString(CultureInfo.InvariantCulture), top];
        }));
    }

    private static string? FamilyTable(JsonObject analysis)
    {
        if (analysis["families"] is not JsonObject families) return null;
        return HtmlTable.Of(["family", "languages"], families.GroupBy(f => f.Value?.GetValue<string>() ?? "(unknown)")
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(group => (IEnumerable<string>)[group.Key, string.Join(", ", group.Select(g => g.Key))]));
    }

    private static JsonObject? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
        }
        catch (System.Text.Json.JsonException)
        {
            // A damaged analysis file must not stop the report; rerunning 'babel analyze' rewrites it.
            return null;
        }
    }
}
