using System.Globalization;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>What a sparse-activation study scores: the K of top-K, the routers, the languages, the split, and the element type the model is scored in (<c>--dtype</c>; a job takes an explicit type, not auto).</summary>
public sealed record SparseRequest(IReadOnlyList<int> TopK, IReadOnlyList<string> Routers, IReadOnlyList<string> Languages, string Split, string Dtype = "float32");

/// <summary>The frequency router's static choice for one (language, K): the experts it switches off, encoded as <see cref="ExpertVariant.Encode"/> does.</summary>
public sealed record FrequencyRouterMask(string Language, int TopK, string Pruned);

/// <summary>
/// The sparse-activation study: every language scored with all experts and with only the top-K experts per token for
/// each router and K; the curves are perplexity against the fraction of FFN compute kept.
/// </summary>
public static class SparseActivationStudy
{
    /// <summary>Checks what a user can get wrong in <paramref name="request"/>, with one sentence each; <paramref name="experts"/> (per layer of <paramref name="model"/>), when known, bounds K.</summary>
    public static void Validate(SparseRequest request, int? experts, string model)
    {
        Checkpoints.ModelDtypes.ParseForJob(request.Dtype);
        if (request.Routers.Count == 0) throw new UserInputException("--routers names no router.");
        foreach (var router in request.Routers)
        {
            if (!SparseExpertActivation.Routers.Contains(router)) throw new UserInputException($"Unknown router '{router}'; use {string.Join(", ", SparseExpertActivation.Routers)}.");
        }
        if (request.TopK.Count == 0) throw new UserInputException("--top-k names no K.");
        foreach (var k in request.TopK)
        {
            if (k < 1 || k > (experts ?? int.MaxValue)) throw new UserInputException($"Top-k {k} is outside 1..{experts}, the experts per layer of {model}.");
        }
        if (request.Languages.Count == 0) throw new UserInputException("The sparse-activation study names no language.");
    }

    /// <summary>"eng/centroid/2": the name of one scored variant; the dense reference is "eng/dense/E".</summary>
    public static string VariantName(string language, string router, int k) => string.Create(CultureInfo.InvariantCulture, $"{language}/{router}/{k}");

    public static string DenseName(string language, int experts) => VariantName(language, "dense", experts);

    /// <summary>
    /// The frequency router's experts for a language at K: pruned[layer][expert] switches off all but the K experts the
    /// language activates most often in that layer, i.e. frequency-guided pruning of E − K experts per layer
    /// (<see cref="ExpertPruning.LeastFrequent"/>; ties: the lower expert id is switched off first).
    /// </summary>
    public static bool[][] FrequencyPruned(double[][] frequencies, int k) =>
        [.. frequencies.Select(layer => ExpertPruning.LeastFrequent(layer, layer.Length - k))];

    /// <summary>The frequency router's mask of every (language, K) of the request, from the languages' frequencies in <paramref name="profile"/>.</summary>
    public static IReadOnlyList<FrequencyRouterMask> FrequencyMasks(ActivationProfile profile, SparseRequest request) =>
    [
        .. from language in request.Languages
           from k in request.TopK
           select new FrequencyRouterMask(language, k, ExpertVariant.Encode(FrequencyPruned(ExpertPruning.Frequencies(profile, language), k))),
    ];

    /// <summary>
    /// The variants scored on <paramref name="language"/>: all experts, then every router at every K; the frequency router
    /// takes its mask from <paramref name="masks"/>.
    /// </summary>
    public static IEnumerable<ExpertVariant> Variants(string language, SparseRequest request, int experts, IReadOnlyList<FrequencyRouterMask>? masks = null) =>
        request.Routers.SelectMany(router => request.TopK.Select(k => router == SparseExpertActivation.FrequencyRouter
                ? ExpertVariant.Routed(VariantName(language, router, k), router, k) with { Pruned = MaskOf(masks, language, k).Pruned }
                : ExpertVariant.Routed(VariantName(language, router, k), router, k)))
            .Prepend(ExpertVariant.Dense(DenseName(language, experts)));

    /// <summary>The frequency router's mask of (language, K), or one sentence when the study has none.</summary>
    public static FrequencyRouterMask MaskOf(IReadOnlyList<FrequencyRouterMask>? masks, string language, int k) =>
        masks?.FirstOrDefault(m => m.Language == language && m.TopK == k)
        ?? throw new UserInputException($"The frequency router has no experts for {language} at K={k}; it needs a profiling run of the model (--run).");

    /// <summary>The curves of a scored study; <paramref name="perplexityOf"/> gives a variant's perplexity by name.</summary>
    public static SparseActivationCurves Curves(string model, int experts, SparseRequest request, Func<string, double> perplexityOf, SparseSpeed speed) =>
        new(model, request.Split, experts, request.TopK, request.Routers,
            [.. request.Languages.Select(language => new LanguageSparseCurves(language, perplexityOf(DenseName(language, experts)),
                request.Routers.ToDictionary(router => router, router => (IReadOnlyDictionary<int, double>)request.TopK.ToDictionary(k => k, k => perplexityOf(VariantName(language, router, k))))))],
            speed);
}
