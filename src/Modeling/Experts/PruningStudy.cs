using System.Globalization;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>
/// What a pruning evaluation scores: rates, strategies, languages (null: every language of the run), seeds the random
/// strategy is averaged over, the split, and the element type the model is scored in (<c>--dtype</c>; a job takes an
/// explicit type, not auto).
/// </summary>
public sealed record PruningRequest(IReadOnlyList<double> Rates, IReadOnlyList<string> Strategies, IReadOnlyList<string>? Languages, int Seeds, string Split, string Dtype = "float32");

/// <summary>One pruning mask of the study: the experts to switch off for a language at a (strategy, rate, seed).</summary>
public sealed record PruningMask(string Language, string Strategy, double Rate, long Seed, string Pruned);

/// <summary>
/// The pruning study ("Unraveling Babel"): for every language, the unpruned model and every (strategy, rate) — random
/// pruning once per seed — scored on held-out text; the curves are perplexity against rate per strategy.
/// </summary>
public static class PruningStudy
{
    /// <summary>The strategy name of every language's unpruned reference.</summary>
    public const string Unpruned = "none";

    /// <summary>Checks what a user can get wrong in <paramref name="request"/>, with one sentence each; <paramref name="experts"/> (per layer), when known, bounds the rates.</summary>
    public static void Validate(PruningRequest request, int? experts = null)
    {
        Checkpoints.ModelDtypes.ParseForJob(request.Dtype);
        if (request.Seeds < 1) throw new UserInputException("--seeds must be at least 1.");
        if (request.Strategies.Count == 0) throw new UserInputException("--strategies names no strategy.");
        foreach (var strategy in request.Strategies) ExpertPruning.RequireStrategy(strategy);
        if (request.Rates.Count == 0) throw new UserInputException("--rates names no rate.");
        foreach (var rate in request.Rates)
        {
            if (experts is { } count) ExpertPruning.ExpertsPerLayer(rate, count);
            else ExpertPruning.RequireRate(rate);
        }
    }

    /// <summary>The seeds a strategy is scored with: every seed for random pruning, one for the deterministic ones.</summary>
    public static IEnumerable<long> SeedsOf(string strategy, int seeds) => strategy == ExpertPruning.Random ? Enumerable.Range(0, seeds).Select(s => (long)s) : [0L];

    /// <summary>"eng/random/0.2/1": the name of one scored variant, unique in a study.</summary>
    public static string VariantName(string language, string strategy, double rate, long seed) =>
        string.Create(CultureInfo.InvariantCulture, $"{language}/{strategy}/{rate:R}/{seed}");

    /// <summary>Every language's unpruned reference.</summary>
    public static string UnprunedName(string language) => VariantName(language, Unpruned, 0, 0);

    /// <summary>Every (language, strategy, rate, seed) the request scores, in a fixed order.</summary>
    public static IEnumerable<(string Language, string Strategy, double Rate, long Seed)> Keys(IReadOnlyList<string> languages, PruningRequest request) =>
        from language in languages
        from strategy in request.Strategies
        from rate in request.Rates
        from seed in SeedsOf(strategy, request.Seeds)
        select (language, strategy, rate, seed);

    /// <summary>The masks of every (language, strategy, rate, seed) of the request, chosen from <paramref name="profile"/>.</summary>
    public static IReadOnlyList<PruningMask> Masks(ActivationProfile profile, IReadOnlyList<string> languages, PruningRequest request) =>
    [
        .. Keys(languages, request).Select(k => new PruningMask(k.Language, k.Strategy, k.Rate, k.Seed,
            ExpertVariant.Encode(ExpertPruning.Plan(profile, k.Language, k.Rate, k.Strategy, k.Seed).Pruned))),
    ];

    /// <summary>The variants scored on <paramref name="language"/>: its unpruned reference, then each of its masks.</summary>
    public static IEnumerable<ExpertVariant> Variants(string language, IEnumerable<PruningMask> masks) =>
        masks.Where(m => m.Language == language).Select(m => new ExpertVariant(VariantName(m.Language, m.Strategy, m.Rate, m.Seed), m.Pruned))
            .Prepend(ExpertVariant.Dense(UnprunedName(language)));

    /// <summary>The curves of a scored study; <paramref name="perplexityOf"/> gives a variant's perplexity by name.</summary>
    public static PruningCurves Curves(string model, IReadOnlyList<string> languages, PruningRequest request, Func<string, double> perplexityOf) =>
        new(model, request.Split, request.Rates, request.Strategies, [.. languages.Select(language => new LanguagePruningCurves(
            language,
            perplexityOf(UnprunedName(language)),
            [.. request.Strategies.SelectMany(strategy => request.Rates.Select(rate =>
            {
                var values = SeedsOf(strategy, request.Seeds).Select(seed => perplexityOf(VariantName(language, strategy, rate, seed))).ToList();
                var mean = values.Average();
                var std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
                return new PruningPoint(strategy, rate, mean, std, values);
            }))]))]);
}
