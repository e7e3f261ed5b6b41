using Babel.Storage;
using ScottPlot;

namespace Babel.Modeling;

/// <summary>The one way Babel writes a figure: rendered in memory, then written atomically, so no half-written PNG is left.</summary>
public static class PlotFiles
{
    public static void SavePng(Plot plot, string path, int width, int height) =>
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));

    public static void SavePng(Multiplot multiplot, string path, int width, int height) =>
        AtomicFile.WriteAllBytes(path, multiplot.Render(width, height).GetImageBytes(ImageFormat.Png));
}
