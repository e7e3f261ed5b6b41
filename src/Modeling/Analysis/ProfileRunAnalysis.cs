using Babel.Modeling.Experts;

namespace Babel.Modeling.Analysis;

/// <summary>What an analysis found and which files it wrote ("wrote PATH" lines).</summary>
public sealed record AnalysisOutcome(IReadOnlyList<AnalysisFinding> Findings, IReadOnlyList<string> Written)
{
    /// <summary>One "title: reading" line per finding, then the "wrote" lines.</summary>
    public IEnumerable<string> Lines() => Findings.Select(f => $"{f.Title}: {f.Reading}").Concat(Written);
}

/// <summary>The analyses of profile runs as <c>babel analyze</c> runs them: the analysis files, then the run's report.html rewritten with them.</summary>
public static class ProfileRunAnalysis
{
    /// <summary>Analyses the run in <paramref name="runDirectory"/>: writes RUN_DIR/analysis/ (analysis.json and figures) and rewrites report.html with the analysis sections.</summary>
    public static AnalysisOutcome Analyze(string runDirectory, AnalysisOptions options)
    {
        var (_, findings) = ExpertAnalysis.Run(runDirectory, options);
        var report = ProfileRun.RewriteReport(runDirectory);
        return new(findings, [$"wrote {Path.GetFullPath(Path.Combine(runDirectory, ExpertAnalysis.FolderName))} and {report}"]);
    }

    /// <summary>Compares run B with run A, writes the comparison folder and, when it lies directly inside run A or B, rewrites that run's report.html.</summary>
    public static AnalysisOutcome Compare(string runA, string runB, string? outputDirectory)
    {
        var (_, findings, directory) = ComparisonRun.Run(runA, runB, outputDirectory);
        List<string> written = [$"wrote {directory}"];
        var parent = Path.GetDirectoryName(directory);
        foreach (var run in new[] { runA, runB }.Where(r => Path.GetFullPath(r).TrimEnd('/') == parent))
        {
            written.Add($"wrote {ProfileRun.RewriteReport(run)}");
        }
        return new(findings, written);
    }
}
