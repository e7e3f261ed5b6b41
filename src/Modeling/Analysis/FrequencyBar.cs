using System.Globalization;
using Babel.Storage;

namespace Babel.Modeling.Analysis;

/// <summary>
/// When an expert counts as high-frequency in one language and layer. Either an absolute activation frequency
/// (<c>0.3</c>: active for more than 30% of the tokens), or relative to that language's layer
/// (<c>mean+1sd</c>: more than the mean plus K population standard deviations of the layer's expert frequencies).
/// The relative bar is the default because a top-k rule fixes every layer's mean at k / experts, so an absolute bar
/// means something different for every rule and partition, while "one deviation above its peers" does not.
/// </summary>
public sealed record FrequencyBar(bool Relative, double Value)
{
    /// <summary>The default bar: above the layer's mean by one standard deviation.</summary>
    public const string Default = "mean+1sd";

    /// <summary>Parses <c>F</c> (an absolute frequency, 0 &lt; F &lt; 1) or <c>mean+Ksd</c> (K ≥ 0).</summary>
    public static FrequencyBar Parse(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.StartsWith("mean+", StringComparison.Ordinal) && trimmed.EndsWith("sd", StringComparison.Ordinal))
        {
            if (double.TryParse(trimmed[5..^2], NumberStyles.Float, CultureInfo.InvariantCulture, out var k) && double.IsFinite(k) && k >= 0)
            {
                return new FrequencyBar(true, k);
            }
        }
        else if (double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var frequency))
        {
            if (frequency > 0 && frequency < 1) return new FrequencyBar(false, frequency);
            throw new UserInputException($"--bar {text} is outside (0, 1); give an activation frequency such as 0.3, or a relative bar such as {Default}.");
        }
        throw new UserInputException($"--bar '{text}' is not understood; give an activation frequency in (0, 1) such as 0.3, or a relative bar mean+Ksd with K ≥ 0 such as {Default}.");
    }

    /// <summary>The frequency an expert must exceed (strictly) among <paramref name="layer"/>, one layer's expert frequencies.</summary>
    public double Threshold(IReadOnlyList<double> layer)
    {
        if (!Relative) return Value;
        var mean = layer.Average();
        var variance = layer.Sum(f => (f - mean) * (f - mean)) / layer.Count;
        return mean + Value * Math.Sqrt(variance);
    }

    /// <summary>A plain description for readings and reports.</summary>
    public string Describe() => Relative
        ? string.Create(CultureInfo.InvariantCulture, $"above the layer's mean frequency + {Value:0.###} standard deviation(s)")
        : string.Create(CultureInfo.InvariantCulture, $"active for more than {Value:0.###} of the tokens");

    public override string ToString() => Relative
        ? string.Create(CultureInfo.InvariantCulture, $"mean+{Value:0.###}sd")
        : Value.ToString("0.####", CultureInfo.InvariantCulture);
}
