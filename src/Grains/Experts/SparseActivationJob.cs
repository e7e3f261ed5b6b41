using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.Experts;

/// <summary>
/// Parameters of a sparse-activation study: the model and corpus keys, the request (top-K, routers, languages, split),
/// the token stream of every language (<see cref="TokenizeJob"/>), whose document counts weigh the shards, and, when the
/// frequency router is scored, its mask of every (language, K), chosen on the client from the profiling run.
/// </summary>
public sealed record SparseActivationParameters(
    string Model,
    string Corpus,
    SparseRequest Request,
    int WindowLength = 256,
    int BatchSize = 8,
    IReadOnlyList<LanguageTokens>? Streams = null,
    IReadOnlyList<FrequencyRouterMask>? FrequencyMasks = null);

/// <summary>What the speed shard writes: the experts per layer and the forward speeds it measured.</summary>
public sealed record SparseSpeedResult(int Experts, SparseSpeed Speed);

/// <summary>
/// <c>babel sparse</c>: held-out perplexity when every token runs only its top-K experts per layer (centroid, frequency,
/// oracle or gate-mean router). A shard is one language (its dense reference and every router × K), plus one <see cref="SpeedShard"/> that
/// measures the forward speed of dense and centroid-routed computation on the worker that runs it, so the result — the
/// <see cref="SparseActivationCurves"/> — is the same whoever writes it.
/// </summary>
public sealed class SparseActivationJob : JobKind<SparseActivationParameters, string, SparseActivationCurves>
{
    public const string KindName = "sparse";
    /// <summary>The shard that measures speed (not a language code, which has three letters).</summary>
    public const string SpeedShard = "speed";
    /// <summary>Documents per language the speed is measured on.</summary>
    public const int SpeedDocuments = 2;

    public override string Name => KindName;

    protected override void Validate(SparseActivationParameters p)
    {
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The sparse-activation study needs a model and a corpus.");
        if (p.Request is null) throw new UserInputException("The sparse-activation study has no request.");
        SparseActivationStudy.Validate(p.Request, experts: null, p.Model);
        if (p.WindowLength < 2 || p.BatchSize < 1) throw new UserInputException("Window length must be at least 2 and batch size at least 1.");
        JobParameters.Split(p.Request.Split);
        if (p.Request.Routers.Contains(SparseExpertActivation.FrequencyRouter))
        {
            var expected = (from language in p.Request.Languages from k in p.Request.TopK select (language, k)).ToHashSet();
            if (p.FrequencyMasks is null || p.FrequencyMasks.Count != expected.Count || !p.FrequencyMasks.All(m => expected.Contains((m.Language, m.TopK))))
            {
                throw new UserInputException("The frequency router needs exactly one mask per (language, K) of the study, from a profiling run of the model (--run).");
            }
        }
    }

    protected override void ValidatePlanningInputs(SparseActivationParameters p)
    {
        TokenizeJob.RequireStreams(p.Streams, p.Request.Languages, KindName);
    }

    protected override async Task<IReadOnlyList<Shard<string>>> PlanAsync(SparseActivationParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var partition = ExpertPartition.Load(await artifacts.LocalFolderAsync(p.Model, cancellationToken));
        SparseActivationStudy.Validate(p.Request, partition.Experts, p.Model);
        if (p.FrequencyMasks?.FirstOrDefault(m => !ExpertVariant.FitsMask(m.Pruned, partition)) is { } misfit)
        {
            throw new UserInputException($"The frequency router's mask of {misfit.Language} at K={misfit.TopK} does not fit the model's {partition.Layers} layers × {partition.Experts} experts.");
        }
        var variants = 1 + p.Request.Routers.Count * p.Request.TopK.Count;
        return
        [
            .. p.Request.Languages.Order(StringComparer.Ordinal).Select(language =>
                new Shard<string>(language, language, ExpertVariantShards.Documents(p.Streams!, language, p.Request.Split) * variants)),
            new Shard<string>(SpeedShard, SpeedShard, 1),
        ];
    }

    protected override ShardResult RunShard(ShardContext context, SparseActivationParameters p, Shard<string> shard, CancellationToken cancellationToken)
    {
        if (shard.Slice != SpeedShard)
        {
            var experts = ExpertPartition.Load(context.LocalFolder(p.Model, cancellationToken)).Experts;
            return ExpertVariantShards.Run(context, shard.Id, p.Model, p.Request.Dtype, p.Corpus, p.Request.Split, shard.Slice, [.. SparseActivationStudy.Variants(shard.Slice, p.Request, experts, p.FrequencyMasks)],
                p.WindowLength, p.BatchSize, cancellationToken);
        }
        TorchRuntime.Initialize(context.Threads);
        var folder = context.LocalFolder(p.Model, cancellationToken);
        var (model, loadedTokenizer) = context.Models.Get(p.Model, folder, ModelDtypes.ParseForJob(p.Request.Dtype));
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; the sparse-activation study needs one.");
        var partition = ExpertPartition.Load(folder);
        var corpus = Corpus.Open(context.LocalFolder(p.Corpus, cancellationToken));
        var texts = p.Request.Languages.SelectMany(l => corpus.ReadDocuments(l, JobParameters.Split(p.Request.Split)).Take(SpeedDocuments)).Select(d => d.Text).ToList();
        // The frequency router's speed with the first language's masks: every language keeps K experts, so the compute is the same.
        var first = p.Request.Languages.Order(StringComparer.Ordinal).First();
        var frequencyPruned = p.Request.Routers.Contains(SparseExpertActivation.FrequencyRouter)
            ? p.Request.TopK.ToDictionary(k => k, k => ExpertVariant.Decode(SparseActivationStudy.MaskOf(p.FrequencyMasks, first, k).Pruned, partition))
            : null;
        var speed = ExpertVariants.MeasureSpeed(model, tokenizer, partition, texts, p.Request.TopK, cancellationToken, frequencyPruned);
        return ShardResult.Of(new SparseSpeedResult(partition.Experts, speed), [KeyValuePair.Create("speed_shards", 1L)]);
    }

    public override async Task<SparseActivationCurves> AssembleAsync(FinishedJob<SparseActivationParameters> job, CancellationToken cancellationToken)
    {
        var speed = (await job.ReadShardsAsync<SparseSpeedResult>([SpeedShard], cancellationToken))[0];
        var totals = job.Status.Totals;
        return SparseActivationStudy.Curves(job.Parameters.Model, speed.Experts, job.Parameters.Request, name => ExpertVariantShards.Perplexity(totals, name), speed.Speed);
    }

    public override void Save(SparseActivationCurves result, string directory) => AtomicFile.WriteDirectory(directory, result.Save);

    public override string Summary(SparseActivationCurves result) => result.Reading();
}
