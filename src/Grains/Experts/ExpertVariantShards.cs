using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;

namespace Babel.Grains.Experts;

/// <summary>
/// The shard both expert-variant studies share (<c>babel eval-pruning</c>, <c>babel sparse</c>): one language's
/// documents scored under each of its variants. NLL is summed in integer nano-nats per variant, so totals are exact
/// whatever ran where.
/// </summary>
public static class ExpertVariantShards
{
    public static string NllTotal(string variant) => $"{variant}.nll_nanonats";

    public static string TokensTotal(string variant) => $"{variant}.tokens";

    /// <summary>The documents of <paramref name="language"/> in the split, from its token stream's count, or one sentence when it has none.</summary>
    public static long Documents(IReadOnlyList<LanguageTokens> streams, string language, string split)
    {
        var documents = TokenizeJob.StreamOf(streams, language).Documents;
        return documents > 0 ? documents : throw new UserInputException($"Language '{language}' has no documents in the {split} split of the corpus.");
    }

    /// <summary>Scores <paramref name="variants"/> on <paramref name="language"/>'s documents of the split with one call of <see cref="ExpertVariants.Score"/>.</summary>
    public static ShardResult Run(ShardContext context, string shardId, string modelKey, string dtype, string corpusKey, string split, string language,
        IReadOnlyList<ExpertVariant> variants, int windowLength, int batchSize, CancellationToken cancellationToken)
    {
        TorchRuntime.Initialize(context.Threads);
        var folder = context.LocalFolder(modelKey, cancellationToken);
        var (model, loadedTokenizer) = context.Models.Get(modelKey, folder, ModelDtypes.ParseForJob(dtype));
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {modelKey} has no tokenizer.json; scoring expert variants needs one.");
        var partition = ExpertPartition.Load(folder);
        var texts = PerplexityJob.Texts(context, corpusKey, language, split, cancellationToken).ToList();
        var sums = ExpertVariants.Score(model, tokenizer, partition, texts, variants, windowLength, batchSize, cancellationToken);
        var totals = new SortedDictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < variants.Count; i++)
        {
            totals[NllTotal(variants[i].Name)] = (long)Math.Round(sums[i].TotalNll * PerplexityJob.NanonatsPerNat);
            totals[TokensTotal(variants[i].Name)] = sums[i].Tokens;
        }
        return ShardResult.Of(new { shard = shardId, language, totals }, totals);
    }

    /// <summary>Perplexity of a variant from a finished job's totals (NaN when it scored no token).</summary>
    public static double Perplexity(IReadOnlyDictionary<string, long> totals, string variant)
    {
        var tokens = totals.GetValueOrDefault(TokensTotal(variant));
        return tokens == 0 ? double.NaN : Math.Exp(totals.GetValueOrDefault(NllTotal(variant)) / PerplexityJob.NanonatsPerNat / tokens);
    }
}
