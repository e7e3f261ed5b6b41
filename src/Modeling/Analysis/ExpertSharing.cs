namespace Babel.Modeling.Analysis;

/// <summary>An expert of one layer.</summary>
public readonly record struct ExpertId(int Layer, int Expert);

/// <summary>An expert that is high-frequency in one language and in no other, with its normalised entropy across languages.</summary>
public sealed record SpecificExpert(int Layer, int Expert, double Frequency, double Entropy);

/// <summary>
/// High-frequency, multilingual shared and language-specific experts of a <see cref="FrequencyTable"/> under one
/// <see cref="FrequencyBar"/>.
/// </summary>
/// <param name="Bar">The bar that decides "high-frequency".</param>
/// <param name="MinLanguages">"Shared" in the weaker sense: high-frequency in at least this many languages.</param>
/// <param name="High">[language][layer][expert]: frequency above the bar.</param>
/// <param name="Thresholds">[language][layer]: the frequency the bar stands at.</param>
/// <param name="HighPerLayer">[language][layer]: number of high-frequency experts.</param>
/// <param name="LanguagesHigh">[layer][expert]: in how many languages the expert is high-frequency.</param>
/// <param name="Entropy">[layer][expert]: normalised entropy (0 … 1) of the expert's frequency distribution across
/// languages; NaN when the expert never activates.</param>
/// <param name="Specific">Per language, the experts high in it and in no other language, most specific (lowest entropy) first.</param>
public sealed record ExpertSharing(
    FrequencyBar Bar,
    int MinLanguages,
    bool[][][] High,
    double[][] Thresholds,
    int[][] HighPerLayer,
    int[][] LanguagesHigh,
    double[][] Entropy,
    IReadOnlyList<IReadOnlyList<SpecificExpert>> Specific)
{
    /// <summary>Per layer, the experts high-frequency in every language.</summary>
    public int[] SharedByAllPerLayer => [.. LanguagesHigh.Select(layer => layer.Count(n => n == High.Length))];

    /// <summary>Per layer, the experts high-frequency in at least <see cref="MinLanguages"/> languages.</summary>
    public int[] SharedByMinPerLayer => [.. LanguagesHigh.Select(layer => layer.Count(n => n >= MinLanguages))];

    /// <summary>Per layer, the language-specific experts (of all languages together).</summary>
    public int[] SpecificPerLayer(int layers) => [.. Enumerable.Range(0, layers).Select(l => Specific.Sum(s => s.Count(e => e.Layer == l)))];

    public static ExpertSharing Compute(FrequencyTable table, FrequencyBar bar, int minLanguages)
    {
        var languages = table.Languages.Count;
        var high = new bool[languages][][];
        var thresholds = new double[languages][];
        var perLayer = new int[languages][];
        for (var language = 0; language < languages; language++)
        {
            high[language] = new bool[table.Layers][];
            thresholds[language] = new double[table.Layers];
            perLayer[language] = new int[table.Layers];
            for (var layer = 0; layer < table.Layers; layer++)
            {
                var frequencies = table.Frequencies[language][layer];
                var threshold = bar.Threshold(frequencies);
                thresholds[language][layer] = threshold;
                high[language][layer] = [.. frequencies.Select(f => f > threshold)];
                perLayer[language][layer] = high[language][layer].Count(h => h);
            }
        }

        var languagesHigh = new int[table.Layers][];
        var entropy = new double[table.Layers][];
        for (var layer = 0; layer < table.Layers; layer++)
        {
            languagesHigh[layer] = new int[table.Experts];
            entropy[layer] = new double[table.Experts];
            for (var expert = 0; expert < table.Experts; expert++)
            {
                languagesHigh[layer][expert] = Enumerable.Range(0, languages).Count(l => high[l][layer][expert]);
                entropy[layer][expert] = NormalisedEntropy([.. Enumerable.Range(0, languages).Select(l => table.Frequencies[l][layer][expert])]);
            }
        }

        var specific = new List<IReadOnlyList<SpecificExpert>>();
        for (var language = 0; language < languages; language++)
        {
            var own = new List<SpecificExpert>();
            for (var layer = 0; layer < table.Layers; layer++)
            {
                for (var expert = 0; expert < table.Experts; expert++)
                {
                    if (high[language][layer][expert] && languagesHigh[layer][expert] == 1)
                    {
                        own.Add(new SpecificExpert(layer, expert, table.Frequencies[language][layer][expert], entropy[layer][expert]));
                    }
                }
            }
            specific.Add([.. own.OrderBy(e => e.Entropy).ThenBy(e => e.Layer).ThenBy(e => e.Expert)]);
        }
        return new ExpertSharing(bar, minLanguages, high, thresholds, perLayer, languagesHigh, entropy, specific);
    }

    /// <summary>
    /// Entropy of <paramref name="values"/> normalised to a distribution, divided by log(count): 1 when equal
    /// everywhere, 0 when all mass is in one place; NaN when the values sum to 0 or there is only one.
    /// </summary>
    public static double NormalisedEntropy(IReadOnlyList<double> values)
    {
        var sum = values.Sum();
        if (!(sum > 0) || values.Count < 2) return double.NaN;
        var entropy = 0.0;
        foreach (var value in values)
        {
            if (value <= 0) continue;
            var p = value / sum;
            entropy -= p * Math.Log(p);
        }
        return entropy / Math.Log(values.Count);
    }
}
