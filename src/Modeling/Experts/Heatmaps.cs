using ScottPlot;

namespace Babel.Modeling.Experts;

/// <summary>Heatmaps of expert activation frequency (layers × experts), one per language and a grid of all, on one colour scale.</summary>
public static class Heatmaps
{
    public const int Width = 900;
    public const int Height = 420;

    /// <summary>Writes <c>heatmap-LANG.png</c> for every language and <c>heatmaps.png</c> (the grid); returns the file names.</summary>
    public static IReadOnlyList<string> Write(ActivationProfile profile, string directory)
    {
        Directory.CreateDirectory(directory);
        var maximum = Math.Max(1e-9, profile.Languages.Values.SelectMany(l => l.Frequencies()).SelectMany(r => r).DefaultIfEmpty(0).Max());
        var files = new List<string>();
        foreach (var (code, activations) in profile.Languages.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            var plot = Plot(code, activations, profile, maximum, colourBar: true);
            var name = $"heatmap-{code}.png";
            PlotFiles.SavePng(plot, Path.Combine(directory, name), Width, Height);
            files.Add(name);
        }

        var count = profile.Languages.Count;
        if (count > 0)
        {
            var columns = (int)Math.Ceiling(Math.Sqrt(count));
            var rows = (int)Math.Ceiling(count / (double)columns);
            var multiplot = new Multiplot();
            multiplot.RemovePlot(multiplot.GetPlot(0));
            foreach (var (code, activations) in profile.Languages.OrderBy(l => l.Key, StringComparer.Ordinal))
            {
                multiplot.AddPlot(Plot(code, activations, profile, maximum, colourBar: false));
            }
            multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(rows, columns);
            PlotFiles.SavePng(multiplot, Path.Combine(directory, "heatmaps.png"), columns * 320, rows * 200);
            files.Add("heatmaps.png");
        }
        return files;
    }

    private static Plot Plot(string code, LanguageActivations activations, ActivationProfile profile, double maximum, bool colourBar)
    {
        var frequencies = activations.Frequencies();
        var data = new double[profile.Layers, profile.Experts];
        // Row 0 is drawn at the top: put the last layer there so layer numbers grow upwards.
        for (var layer = 0; layer < profile.Layers; layer++)
        {
            for (var expert = 0; expert < profile.Experts; expert++) data[profile.Layers - 1 - layer, expert] = frequencies[layer][expert];
        }
        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(data);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        heatmap.ManualRange = new ScottPlot.Range(0, maximum);
        // ScottPlot aligns cell centres with the extent's edges: centres at integer expert and layer numbers.
        heatmap.Extent = new CoordinateRect(0, Math.Max(1, profile.Experts - 1), 0, Math.Max(1, profile.Layers - 1));
        plot.Axes.Bottom.TickGenerator = IntegerTicks(profile.Experts);
        plot.Axes.Left.TickGenerator = IntegerTicks(profile.Layers);
        if (colourBar) plot.Add.ColorBar(heatmap).Label = "activation frequency";
        plot.Title($"{code} ({activations.Tokens:N0} tokens, {profile.Rule})");
        plot.XLabel("expert");
        plot.YLabel("layer");
        return plot;
    }

    private static ScottPlot.TickGenerators.NumericManual IntegerTicks(int count)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var step = Math.Max(1, (int)Math.Ceiling(count / 16.0));
        for (var i = 0; i < count; i += step) ticks.AddMajor(i, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return ticks;
    }
}
