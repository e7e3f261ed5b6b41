using System.Globalization;
using ScottPlot;

namespace Babel.Modeling.Analysis;

/// <summary>The figures of the analyses (ScottPlot), each written to a temporary name and renamed.</summary>
public static class AnalysisPlots
{
    /// <summary>Writes high-frequency.png, shared-experts.png, similarity.png and dendrogram.png into <paramref name="directory"/>.</summary>
    public static void Write(ExpertAnalysis analysis, string directory)
    {
        var table = analysis.Table;
        var order = analysis.Dendrogram.LeafOrder;
        var labels = order.Select(analysis.Label).ToArray();
        var codes = order.Select(i => table.Languages[i]).ToArray();
        var rowHeight = Math.Max(16, 600 / Math.Max(1, order.Count));

        // Languages (dendrogram order) × layers: how many experts clear the bar.
        var high = new double[order.Count, table.Layers];
        for (var r = 0; r < order.Count; r++)
        {
            for (var layer = 0; layer < table.Layers; layer++) high[r, layer] = analysis.Sharing.HighPerLayer[order[r]][layer];
        }
        var plot = Heatmap(high, labels, [.. Enumerable.Range(0, table.Layers).Select(Invariant)], new ScottPlot.Colormaps.Viridis(),
            new ScottPlot.Range(0, Math.Max(1, analysis.Sharing.HighPerLayer.SelectMany(l => l).Max())), "high-frequency experts");
        if (order.Count * table.Layers <= 800)
        {
            // Counts are small integers: print them, so equal colours need no colour bar to read.
            for (var r = 0; r < order.Count; r++)
            {
                for (var layer = 0; layer < table.Layers; layer++)
                {
                    var text = plot.Add.Text(Invariant((int)high[r, layer]), layer, order.Count - 1 - r);
                    text.LabelFontColor = Colors.White;
                    text.LabelAlignment = Alignment.MiddleCenter;
                }
            }
        }
        plot.Title($"High-frequency experts per language and layer (bar {analysis.Bar})");
        plot.XLabel("layer");
        Save(plot, Path.Combine(directory, "high-frequency.png"), 900, 120 + rowHeight * order.Count);

        plot = new Plot();
        var layers = Enumerable.Range(0, table.Layers).Select(l => (double)l).ToArray();
        var series = new (string Label, int[] Values, Color Colour)[]
        {
            ($"high in all {table.Languages.Count} languages", analysis.Sharing.SharedByAllPerLayer, Colors.DarkBlue),
            ($"high in ≥ {analysis.MinLanguages} languages", analysis.Sharing.SharedByMinPerLayer, Colors.SteelBlue),
            ("language-specific (high in one only)", analysis.Sharing.SpecificPerLayer(table.Layers), Colors.DarkOrange),
        };
        for (var s = 0; s < series.Length; s++)
        {
            var bars = plot.Add.Bars([.. layers.Select(x => x + (s - 1) * 0.27)], [.. series[s].Values.Select(v => (double)v)]);
            bars.Color = series[s].Colour;
            bars.LegendText = series[s].Label;
            foreach (var bar in bars.Bars) bar.Size = 0.25;
        }
        plot.Axes.Bottom.TickGenerator = Ticks([.. Enumerable.Range(0, table.Layers).Select(Invariant)], reverse: false);
        // Headroom above the tallest bar keeps the legend off the bars.
        plot.Axes.Margins(bottom: 0, top: 0.4);
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title($"Shared and language-specific experts per layer (of {table.Experts})");
        plot.XLabel("layer");
        plot.YLabel("experts");
        Save(plot, Path.Combine(directory, "shared-experts.png"), 900, 450);

        var similarity = new double[order.Count, order.Count];
        for (var r = 0; r < order.Count; r++)
        {
            for (var c = 0; c < order.Count; c++) similarity[r, c] = analysis.Similarity[order[r], order[c]];
        }
        // The colour scale spans the off-diagonal values: the diagonal's 1 would otherwise flatten every contrast.
        var offDiagonal = Enumerable.Range(0, order.Count).SelectMany(r => Enumerable.Range(0, order.Count).Where(c => c != r).Select(c => similarity[r, c])).ToList();
        var scale = offDiagonal.Count == 0 || offDiagonal.Min() == offDiagonal.Max() ? (ScottPlot.Range?)null : new ScottPlot.Range(offDiagonal.Min(), offDiagonal.Max());
        plot = Heatmap(similarity, labels, codes, new ScottPlot.Colormaps.Viridis(), scale, $"{analysis.Options.Similarity} similarity (diagonal = 1)");
        plot.Title($"Language similarity of activation frequencies ({analysis.Options.Similarity}), in dendrogram order");
        Save(plot, Path.Combine(directory, "similarity.png"), 300 + rowHeight * order.Count + 120, 120 + rowHeight * order.Count);

        plot = DendrogramPlot(analysis.Dendrogram, [.. Enumerable.Range(0, table.Languages.Count).Select(analysis.Label)]);
        plot.Title($"Average-linkage clustering of languages on 1 − {analysis.Options.Similarity}");
        plot.XLabel($"1 − {analysis.Options.Similarity} similarity (average linkage)");
        Save(plot, Path.Combine(directory, "dendrogram.png"), 900, 120 + rowHeight * order.Count);
    }

    /// <summary>Writes difference-LANG.png (layer × expert, B − A), difference-languages.png and layer-distance.png.</summary>
    public static void WriteComparison(ProfileComparison comparison, string nameA, string nameB, string directory)
    {
        var limit = Math.Max(1e-9, comparison.Difference.SelectMany(l => l).SelectMany(e => e).Select(Math.Abs).DefaultIfEmpty(0).Max());
        for (var language = 0; language < comparison.Languages.Count; language++)
        {
            var data = new double[comparison.Layers, comparison.Experts];
            var rows = new string[comparison.Layers];
            // Last layer on top, as in the profile's heatmaps.
            for (var layer = 0; layer < comparison.Layers; layer++)
            {
                rows[comparison.Layers - 1 - layer] = Invariant(layer);
                for (var expert = 0; expert < comparison.Experts; expert++) data[comparison.Layers - 1 - layer, expert] = comparison.Difference[language][layer][expert];
            }
            var plot = Heatmap(data, rows, [.. Enumerable.Range(0, comparison.Experts).Select(Invariant)], new ScottPlot.Colormaps.Balance(), new ScottPlot.Range(-limit, limit),
                $"frequency {nameB} − {nameA}");
            plot.Title($"{comparison.Languages[language]}: activation frequency {nameB} − {nameA}");
            plot.XLabel("expert");
            plot.YLabel("layer");
            Save(plot, Path.Combine(directory, $"difference-{comparison.Languages[language]}.png"), 900, 420);
        }

        var summary = new double[comparison.Languages.Count, comparison.Layers];
        for (var language = 0; language < comparison.Languages.Count; language++)
        {
            for (var layer = 0; layer < comparison.Layers; layer++) summary[language, layer] = comparison.LanguageLayer[language][layer];
        }
        var rowHeight = Math.Max(16, 600 / Math.Max(1, comparison.Languages.Count));
        var overview = Heatmap(summary, [.. comparison.Languages], [.. Enumerable.Range(0, comparison.Layers).Select(Invariant)], new ScottPlot.Colormaps.Viridis(), null,
            "mean |B − A| over experts");
        overview.Title($"Mean absolute frequency difference per language and layer ({nameB} vs {nameA})");
        overview.XLabel("layer");
        Save(overview, Path.Combine(directory, "difference-languages.png"), 900, 120 + rowHeight * comparison.Languages.Count);

        var distance = new Plot();
        var xs = Enumerable.Range(0, comparison.Layers).Select(l => (double)l).ToArray();
        var mad = distance.Add.Scatter(xs, [.. comparison.PerLayer.Select(d => d.MeanAbsoluteDifference)]);
        mad.LegendText = "mean |B − A|";
        mad.LineWidth = 2;
        var cosine = distance.Add.Scatter(xs, [.. comparison.PerLayer.Select(d => d.CosineDistance)]);
        cosine.LegendText = "1 − cosine";
        cosine.LineWidth = 2;
        distance.Axes.Bottom.TickGenerator = Ticks([.. Enumerable.Range(0, comparison.Layers).Select(Invariant)], reverse: false);
        distance.ShowLegend(Alignment.UpperLeft);
        distance.Title($"Per-layer distance of activation frequencies, {nameB} vs {nameA}");
        distance.XLabel("layer");
        distance.YLabel("distance");
        Save(distance, Path.Combine(directory, "layer-distance.png"), 900, 420);
    }

    /// <summary>A horizontal dendrogram: leaves top to bottom in leaf order, merge heights along x.</summary>
    public static Plot DendrogramPlot(Dendrogram dendrogram, IReadOnlyList<string> labels)
    {
        var n = labels.Count;
        var position = new Dictionary<int, double>();
        var height = new Dictionary<int, double>();
        for (var k = 0; k < dendrogram.LeafOrder.Count; k++)
        {
            position[dendrogram.LeafOrder[k]] = n - 1 - k;
            height[dendrogram.LeafOrder[k]] = 0;
        }
        var plot = new Plot();
        for (var i = 0; i < dendrogram.Merges.Count; i++)
        {
            var merge = dendrogram.Merges[i];
            var (left, right) = (position[merge.Left], position[merge.Right]);
            foreach (var (child, y) in new[] { (merge.Left, left), (merge.Right, right) })
            {
                Segment(plot, height[child], y, merge.Height, y);
            }
            Segment(plot, merge.Height, left, merge.Height, right);
            position[n + i] = (left + right) / 2;
            height[n + i] = merge.Height;
        }
        plot.Axes.Left.TickGenerator = Ticks([.. dendrogram.LeafOrder.Select(i => labels[i])], reverse: true);
        plot.Axes.Margins(left: 0.02, right: 0.05);
        return plot;
    }

    private static void Segment(Plot plot, double x1, double y1, double x2, double y2)
    {
        var line = plot.Add.Line(x1, y1, x2, y2);
        line.LineWidth = 2;
        line.LineColor = Colors.Black;
    }

    /// <summary>A heatmap whose row 0 is at the top, labelled by <paramref name="rows"/> and <paramref name="columns"/>.</summary>
    private static Plot Heatmap(double[,] data, IReadOnlyList<string> rows, IReadOnlyList<string> columns, IColormap colormap, ScottPlot.Range? range, string colourLabel)
    {
        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(data);
        heatmap.Colormap = colormap;
        if (range is { } r) heatmap.ManualRange = r;
        // ScottPlot aligns cell centres with the extent's edges: centres at integer column and row numbers.
        heatmap.Extent = new CoordinateRect(0, Math.Max(1, columns.Count - 1), 0, Math.Max(1, rows.Count - 1));
        plot.Axes.Bottom.TickGenerator = Ticks(columns, reverse: false);
        plot.Axes.Left.TickGenerator = Ticks(rows, reverse: true);
        plot.Add.ColorBar(heatmap).Label = colourLabel;
        return plot;
    }

    /// <summary>One tick per label at 0, 1, … (or counting down from the top when <paramref name="reverse"/>).</summary>
    private static ScottPlot.TickGenerators.NumericManual Ticks(IReadOnlyList<string> labels, bool reverse)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (var i = 0; i < labels.Count; i++) ticks.AddMajor(reverse ? labels.Count - 1 - i : i, labels[i]);
        return ticks;
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static void Save(Plot plot, string path, int width, int height) => PlotFiles.SavePng(plot, path, width, height);
}
