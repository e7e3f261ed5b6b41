using Babel.Modeling.Experts;
using Xunit;

namespace Babel.UnitTests.Experts;

public class PruningCurvesTests
{
    private static PruningPoint Point(string strategy, double rate, params double[] seeds) =>
        new(strategy, rate, seeds.Average(), 0, seeds);

    private static readonly PruningCurves _curves = new("models/x", "heldout", [0.2, 0.5], ExpertPruning.Strategies,
    [
        new("eng", 10, [Point("frequency", 0.2, 11), Point("frequency", 0.5, 15), Point("random", 0.2, 12, 14), Point("random", 0.5, 14, 18), Point("layerwise", 0.2, 11), Point("layerwise", 0.5, 14),
            Point("concentration", 0.2, 9.9), Point("concentration", 0.5, 16)]),
        new("fra", 20, [Point("frequency", 0.2, 22), Point("frequency", 0.5, 30), Point("random", 0.2, 19, 19), Point("random", 0.5, 40, 44), Point("layerwise", 0.2, 23), Point("layerwise", 0.5, 30),
            Point("concentration", 0.2, 22), Point("concentration", 0.5, 29)]),
    ]);

    [Fact]
    public void Wins_ties_and_mean_ratios_are_counted_over_language_and_rate_pairs()
    {
        // frequency < random: eng 0.2 (11 < 13), eng 0.5 (15 < 16), fra 0.5 (30 < 42); fra 0.2 loses (22 > 19).
        Assert.Equal((3, 0, 4), _curves.Wins(ExpertPruning.Frequency, ExpertPruning.Random));
        // layerwise vs frequency: eng 0.5 wins (14 < 15), eng 0.2 and fra 0.5 tie, fra 0.2 loses.
        Assert.Equal((1, 2, 4), _curves.Wins(ExpertPruning.Layerwise, ExpertPruning.Frequency));
        Assert.Equal((16 / 10.0 + 42 / 20.0) / 2, _curves.MeanRatio(ExpertPruning.Random, 0.5), 12);
        var reading = _curves.Reading();
        Assert.StartsWith("Frequency-guided pruning gives lower perplexity than random pruning in 3 of 4 (language, rate) pairs (equal in 0, worse in 1);", reading, StringComparison.Ordinal);
        Assert.Contains("layer-wise rates from the activation spread beat uniform frequency-guided rates in 1 of 4 (language, rate) pairs (equal in 2, worse in 1)", reading, StringComparison.Ordinal);
        // concentration vs frequency: eng 0.2 wins (9.9 < 11), fra 0.5 wins (29 < 30), fra 0.2 ties, eng 0.5 loses (16 > 15).
        Assert.Equal((2, 1, 4), _curves.Wins(ExpertPruning.Concentration, ExpertPruning.Frequency));
        Assert.Contains("from activation concentration beat uniform frequency-guided rates in 2 of 4 (language, rate) pairs (equal in 1, worse in 1)", reading, StringComparison.Ordinal);
        Assert.Contains("at rates ≤ 0.2 pruning beats the unpruned model in 1 of 2 languages (lowest ratio 0.9900, eng concentration 0.2)", reading, StringComparison.Ordinal);
        Assert.Contains("random 1.85×", reading, StringComparison.Ordinal);
    }

    [Fact]
    public void Best_ratio_per_language_is_the_lowest_at_low_rates_without_random()
    {
        // fra: random at 0.2 (19 / 20 = 0.95) is the control, not a candidate; frequency and concentration tie at 1.1, the first strategy listed wins.
        Assert.Equal([new BestRatio("eng", "concentration", 0.2, 9.9 / 10), new BestRatio("fra", "frequency", 0.2, 22 / 20.0)], _curves.BestRatios());
        // With no rate as low as 0.2 the lowest rate is used.
        var high = _curves with { Rates = [0.5] };
        Assert.Equal([new BestRatio("eng", "layerwise", 0.5, 1.4), new BestRatio("fra", "concentration", 0.5, 29 / 20.0)], high.BestRatios());
    }

    [Fact]
    public void The_table_and_plots_are_written_and_read_back()
    {
        using var scratch = new ScratchFolder();
        var images = _curves.Save(scratch.Path);
        Assert.Equal([PruningCurves.SummaryImage, PruningCurves.ImageOf("eng"), PruningCurves.ImageOf("fra")], images);
        Assert.All(images, image => Assert.True(new FileInfo(scratch.Combine(image)).Length > 1000));
        var table = File.ReadAllLines(scratch.Combine(PruningCurves.TableFileName));
        Assert.Contains("| eng | 10.00 | 11.00 | 15.00 | 13.00 ± 0.00 | 16.00 ± 0.00 | 11.00 | 14.00 | 9.90 | 16.00 |", table);
        Assert.Contains("| eng | 0.9900 | concentration | 0.2 |", table);
        Assert.Equal(_curves.Languages[1].Points, PruningCurves.Load(scratch.Path).Languages[1].Points, (a, b) => a.Strategy == b.Strategy && a.Rate == b.Rate && a.Perplexity == b.Perplexity && a.Seeds.SequenceEqual(b.Seeds));
    }
}
