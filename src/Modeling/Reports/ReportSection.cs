namespace Babel.Modeling.Reports;

/// <summary>
/// An extra section of <c>report.html</c> (an analysis, a pruning curve, ...): a title, a one-line reading of what it
/// shows, PNG images (paths relative to the run folder; missing ones are skipped) and an optional HTML table.
/// </summary>
public sealed record ReportSection(string Title, string Reading, IReadOnlyList<string> Images, string? TableHtml = null);
