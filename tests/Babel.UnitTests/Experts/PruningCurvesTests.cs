using Babel.Modeling.Experts;
using Xunit;

namespace Babel.UnitTests.Experts;

public class PruningCurvesTests
{
    private static PruningPoint Point(string strategy, double rate, params double[] seeds) =>
        new(strategy, rate, seeds.Average(), 0, seeds);

    private static readonly PruningCurves _curves = new("models/x", "heldout", [0.2, 0.5], [ExpertPruning.Frequency, ExpertPruning.Random, ExpertPruning.Layerwise],
    [
        new("eng", 10, [Point("frequency", 0.2, 11), Point("frequency", 0.5, 15), Point("random", 0.2, 12, 14), Point("random", 0.5, 14, 18), Point("layerwise", 0.2, 11), Point("layerwise", 0.5, 14)]),
        new("fra", 20, [Point("frequency", 0.2, 22), Point("frequency", 0.5, 30), Point("random", 0.2, 21, 21), Point("random", 0.5, 40, 44), Point("layerwise", 0.2, 23), Point("layerwise", 0.5, 30)]),
    ]);

    [Fact]
    public void Wins_ties_and_mean_ratios_are_counted_over_language_and_rate_pairs()
    {
        // frequency < random: eng 0.2 (11 < 13), eng 0.5 (15 < 16), fra 0.5 (30 < 42); fra 0.2 loses (22 > 21).
        Assert.Equal((3, 0, 4), _curves.Wins(ExpertPruning.Frequency, ExpertPruning.Random));
        // layerwise vs frequency: eng 0.5 wins (14 < 15), eng 0.2 and fra 0.5 tie, fra 0.2 loses.
        Assert.Equal((1, 2, 4), _curves.Wins(ExpertPruning.Layerwise, ExpertPruning.Frequency));
        Assert.Equal((16 / 10.0 + 42 / 20.0) / 2, _curves.MeanRatio(ExpertPruning.Random, 0.5), 12);
        var reading = _curves.Reading();
        Assert.StartsWith("Frequency-guided pruning gives lower perplexity than random pruning in 3 of 4 (language, rate) pairs;", reading, StringComparison.Ordinal);
        Assert.Contains("layer-wise rates beat uniform frequency-guided rates in 1 of 4 (language, rate) pairs (equal in 2)", reading, StringComparison.Ordinal);
        Assert.Contains("random 1.85×", reading, StringComparison.Ordinal);
    }

    [Fact]
    public void The_table_and_plots_are_written_and_read_back()
    {
        using var scratch = new ScratchFolder();
        var images = _curves.Save(scratch.Path);
        Assert.Equal([PruningCurves.SummaryImage, PruningCurves.ImageOf("eng"), PruningCurves.ImageOf("fra")], images);
        Assert.All(images, image => Assert.True(new FileInfo(scratch.Combine(image)).Length > 1000));
        var table = File.ReadAllLines(scratch.Combine(PruningCurves.TableFileName));
        Assert.Contains("| eng | 10.00 | 11.00 | 15.00 | 13.00 ± 0.00 | 16.00 ± 0.00 | 11.00 | 14.00 |", table);
        Assert.Equal(_curves.Languages[1].Points, PruningCurves.Load(scratch.Path).Languages[1].Points, (a, b) => a.Strategy == b.Strategy && a.Rate == b.Rate && a.Perplexity == b.Perplexity && a.Seeds.SequenceEqual(b.Seeds));
    }
}
