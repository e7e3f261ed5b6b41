using System.Collections.Immutable;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.Experts;

/// <summary>
/// One variant of the model, evaluated on one language. Static pruning: <see cref="Pruned"/> holds layers × experts
/// characters, '1' for a pruned expert (row-major), so a plan travels in the job's parameters without the profile.
/// Sparse activation: <see cref="Router"/> and <see cref="TopK"/> (see <see cref="SparseExpertActivation"/>), and
/// <see cref="Pruned"/> is empty.
/// </summary>
public sealed record PruningVariant(string Name, string Language, string Pruned, string? Router = null, int TopK = 0);

/// <summary>Parameters of a pruning evaluation: the model and corpus keys, the split, and every variant to score.</summary>
public sealed record PruningEvaluationParameters(
    string Model,
    string Corpus,
    IReadOnlyList<PruningVariant> Variants,
    string Split = "heldout",
    int WindowLength = 256,
    int BatchSize = 8);

/// <summary>
/// Held-out perplexity of expert-pruned and sparsely activated variants of a model (<c>babel eval-pruning</c>,
/// <c>babel sparse</c>). A shard is one language: it scores that language's documents under every variant meant for
/// it, switching experts off with an <see cref="ExpertMask"/> or a <see cref="SparseExpertActivation"/>. NLL is summed in integer nano-nats per variant, so totals are exact whatever ran where.
/// </summary>
public sealed class PruningEvaluationJob : IJobKind
{
    public const string KindName = "prune-eval";
    /// <summary>The variant with no expert pruned: every language's reference perplexity.</summary>
    public const string Unpruned = "none";

    public string Name => KindName;

    public static string Serialize<T>(T value) => JobParameters.Serialize(value);

    public static PruningEvaluationParameters ParseParameters(string json)
    {
        var p = JobParameters.Deserialize<PruningEvaluationParameters>(json, KindName);
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus))
        {
            throw new UserInputException("The pruning evaluation needs a model and a corpus.");
        }
        if (p.Variants is null || p.Variants.Count == 0) throw new UserInputException("The pruning evaluation names no variant.");
        if (p.Variants.Select(v => v.Name).Distinct(StringComparer.Ordinal).Count() != p.Variants.Count)
        {
            throw new UserInputException("Pruning variant names must be unique.");
        }
        if (p.WindowLength < 2 || p.BatchSize < 1) throw new UserInputException("Window length must be at least 2 and batch size at least 1.");
        JobParameters.Split(p.Split);
        return p;
    }

    public static string NllTotal(string variant) => $"{variant}.nll_nanonats";
    public static string TokensTotal(string variant) => $"{variant}.tokens";

    public async Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var corpus = Corpus.Open(await artifacts.LocalFolderAsync(p.Corpus, cancellationToken));
        var partition = ExpertPartition.Load(await artifacts.LocalFolderAsync(p.Model, cancellationToken));
        foreach (var variant in p.Variants)
        {
            if (variant.Router is not null)
            {
                if (!SparseExpertActivation.Routers.Contains(variant.Router) || variant.TopK < 1 || variant.TopK > partition.Experts)
                {
                    throw new UserInputException($"Variant {variant.Name}: router '{variant.Router}' with top-k {variant.TopK} does not fit {partition.Experts} experts per layer.");
                }
            }
            else if (variant.Pruned.Length != partition.Layers * partition.Experts || variant.Pruned.Any(c => c is not ('0' or '1')))
            {
                throw new UserInputException($"Pruning variant {variant.Name} does not fit the model's {partition.Layers} layers × {partition.Experts} experts.");
            }
        }
        var split = JobParameters.Split(p.Split);
        return [.. p.Variants.GroupBy(v => v.Language, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal).Select(group =>
        {
            var documents = corpus.ReadDocuments(group.Key, split).Count();
            if (documents == 0) throw new UserInputException($"Language '{group.Key}' has no documents in the {p.Split} split of the corpus.");
            return new ShardSpec(group.Key, Serialize(group.Key), (long)documents * group.Count());
        })];
    }

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var language = JobParameters.Deserialize<string>(shard.Parameters, KindName);
        TorchRuntime.Initialize(context.Threads);
        var folder = context.LocalFolder(p.Model, cancellationToken);
        var (model, loadedTokenizer) = context.Models.Get(p.Model, folder);
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; pruning evaluation needs one.");
        var partition = ExpertPartition.Load(folder);
        var corpus = Corpus.Open(context.LocalFolder(p.Corpus, cancellationToken));
        var texts = corpus.ReadDocuments(language, JobParameters.Split(p.Split)).Select(d => d.Text).ToList();
        var totals = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
        foreach (var variant in p.Variants.Where(v => v.Language == language))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = TorchSharp.torch.NewDisposeScope();
            using var hook = Hook(model, partition, variant);
            var sum = Perplexity.Accumulate(model, tokenizer, texts, p.WindowLength, p.BatchSize, (Modeling.Transformer.IFeedForwardHook)hook);
            totals[NllTotal(variant.Name)] = (long)Math.Round(sum.TotalNll * PerplexityJob.NanonatsPerNat);
            totals[TokensTotal(variant.Name)] = sum.Tokens;
        }
        var result = totals.ToImmutable();
        return new ShardResult(JobParameters.SerializeToUtf8Bytes(new { shard = shard.ShardId, language, totals = result }), result);
    }

    private static IDisposable Hook(Modeling.Transformer.CausalLanguageModel model, ExpertPartition partition, PruningVariant variant) =>
        variant.Router is { } router
            ? new SparseExpertActivation(model, partition, variant.TopK, router)
            : new ExpertMask(partition, TorchSharp.torch.tensor(variant.Pruned.Select(c => c == '1' ? 0f : 1f).ToArray(), [partition.Layers, partition.Experts]));

    /// <summary>Row-major '0'/'1' encoding of a plan's pruned experts.</summary>
    public static string Encode(bool[][] pruned) => string.Concat(pruned.SelectMany(layer => layer.Select(p => p ? '1' : '0')));

    /// <summary>Mean NLL per token of a variant from a finished job's totals.</summary>
    public static double MeanNll(IReadOnlyDictionary<string, long> totals, string variant)
    {
        var tokens = totals.GetValueOrDefault(TokensTotal(variant));
        return tokens == 0 ? double.NaN : totals.GetValueOrDefault(NllTotal(variant)) / PerplexityJob.NanonatsPerNat / tokens;
    }
}
