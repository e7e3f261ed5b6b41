using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Modeling.Analysis;

/// <summary>
/// Activation frequencies of some languages of one profile: <c>Frequencies[language][layer][expert]</c> =
/// counts / tokens, languages in the order given.
/// </summary>
public sealed class FrequencyTable
{
    public FrequencyTable(IReadOnlyList<string> languages, int layers, int experts, double[][][] frequencies)
    {
        if (frequencies.Length != languages.Count || frequencies.Any(l => l.Length != layers || l.Any(e => e.Length != experts)))
        {
            throw new ArgumentException($"frequencies must be {languages.Count} languages × {layers} layers × {experts} experts.", nameof(frequencies));
        }
        Languages = languages;
        Layers = layers;
        Experts = experts;
        Frequencies = frequencies;
    }

    public IReadOnlyList<string> Languages { get; }
    public int Layers { get; }
    public int Experts { get; }
    public double[][][] Frequencies { get; }

    /// <summary>
    /// The table of <paramref name="profile"/> for <paramref name="languages"/> (default: all, in ordinal order);
    /// a language absent from the run or without tokens is a <see cref="UserInputException"/>.
    /// </summary>
    public static FrequencyTable From(ActivationProfile profile, IReadOnlyList<string>? languages = null, string? runName = null)
    {
        var codes = languages ?? [.. profile.Languages.Keys.OrderBy(k => k, StringComparer.Ordinal)];
        var frequencies = new double[codes.Count][][];
        for (var i = 0; i < codes.Count; i++)
        {
            if (!profile.Languages.TryGetValue(codes[i], out var activations))
            {
                throw new UserInputException($"language '{codes[i]}' is not in {runName ?? "the run"}; it has: {string.Join(", ", profile.Languages.Keys)}.");
            }
            if (activations.Tokens <= 0)
            {
                throw new UserInputException($"language '{codes[i]}' has no profiled tokens in {runName ?? "the run"}; profile it again with more text or leave it out.");
            }
            frequencies[i] = activations.Frequencies();
        }
        return new FrequencyTable(codes, profile.Layers, profile.Experts, frequencies);
    }

    /// <summary>One language's frequencies flattened layer by layer (layer-major), the vector that similarities compare.</summary>
    public double[] Flattened(int language) => [.. Frequencies[language].SelectMany(layer => layer)];
}
