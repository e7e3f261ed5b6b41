using System.Globalization;
using System.Text.Json.Serialization;

namespace Babel.Modeling.Reports;

/// <summary>Mean and sample standard deviation of a score over seeds.</summary>
public sealed record MeanStd([property: JsonPropertyName("mean")] double Mean, [property: JsonPropertyName("std")] double Std)
{
    public static MeanStd Of(IReadOnlyList<double> values)
    {
        var mean = values.Average();
        var std = values.Count < 2 ? 0 : Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
        return new MeanStd(mean, std);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Mean:F4} ± {Std:F4}");
}
