using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Grains.Experts;

/// <summary>
/// Parameters of a pruning evaluation: the model and corpus keys, the request (its languages resolved), the mask of
/// every (language, strategy, rate, seed), chosen on the client from the profile run, and the token stream of every
/// language (<see cref="TokenizeJob"/>), whose document counts weigh the shards.
/// </summary>
public sealed record PruningEvaluationParameters(
    string Model,
    string Corpus,
    PruningRequest Request,
    IReadOnlyList<PruningMask> Masks,
    int WindowLength = 256,
    int BatchSize = 8,
    IReadOnlyList<LanguageTokens>? Streams = null);

/// <summary>
/// <c>babel eval-pruning</c>: held-out perplexity of frequency-guided, random and layer-wise expert pruning at several
/// rates. A shard is one language: its unpruned reference and every mask meant for it; the result is the
/// <see cref="PruningCurves"/>.
/// </summary>
public sealed class PruningEvaluationJob : JobKind<PruningEvaluationParameters, string, PruningCurves>
{
    public const string KindName = "eval-pruning";

    public override string Name => KindName;

    protected override void Validate(PruningEvaluationParameters p)
    {
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The pruning evaluation needs a model and a corpus.");
        if (p.Request?.Languages is not { Count: > 0 } languages) throw new UserInputException("The pruning evaluation names no language.");
        PruningStudy.Validate(p.Request);
        var expected = PruningStudy.Keys(languages, p.Request).ToHashSet();
        if (p.Masks is null || p.Masks.Count != expected.Count || !p.Masks.All(m => expected.Contains((m.Language, m.Strategy, m.Rate, m.Seed))))
        {
            throw new UserInputException("The pruning evaluation needs exactly one mask per (language, strategy, rate, seed) of its request.");
        }
        if (p.WindowLength < 2 || p.BatchSize < 1) throw new UserInputException("Window length must be at least 2 and batch size at least 1.");
        JobParameters.Split(p.Request.Split);
    }

    protected override void ValidatePlanningInputs(PruningEvaluationParameters p)
    {
        TokenizeJob.RequireStreams(p.Streams, p.Request.Languages!, KindName);
    }

    protected override async Task<IReadOnlyList<Shard<string>>> PlanAsync(PruningEvaluationParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var partition = ExpertPartition.Load(await artifacts.LocalFolderAsync(p.Model, cancellationToken));
        PruningStudy.Validate(p.Request, partition.Experts);
        var misfit = p.Masks.FirstOrDefault(m => !ExpertVariant.FitsMask(m.Pruned, partition));
        if (misfit is not null)
        {
            throw new UserInputException($"The pruning mask of {PruningStudy.VariantName(misfit.Language, misfit.Strategy, misfit.Rate, misfit.Seed)} does not fit the model's {partition.Layers} layers × {partition.Experts} experts.");
        }
        return [.. p.Request.Languages!.Order(StringComparer.Ordinal).Select(language => new Shard<string>(language, language,
            ExpertVariantShards.Documents(p.Streams!, language, p.Request.Split) * (1 + p.Masks.Count(m => m.Language == language))))];
    }

    protected override ShardResult RunShard(ShardContext context, PruningEvaluationParameters p, Shard<string> shard, CancellationToken cancellationToken) =>
        ExpertVariantShards.Run(context, shard.Id, p.Model, p.Request.Dtype, p.Corpus, p.Request.Split, shard.Slice, [.. PruningStudy.Variants(shard.Slice, p.Masks)],
            p.WindowLength, p.BatchSize, cancellationToken);

    public override Task<PruningCurves> AssembleAsync(FinishedJob<PruningEvaluationParameters> job, CancellationToken cancellationToken)
    {
        var totals = job.Status.Totals;
        return Task.FromResult(PruningStudy.Curves(job.Parameters.Model, job.Parameters.Request.Languages!, job.Parameters.Request,
            name => ExpertVariantShards.Perplexity(totals, name)));
    }

    public override void Save(PruningCurves result, string directory) => AtomicFile.WriteDirectory(directory, temporary => result.Save(temporary));

    public override string Summary(PruningCurves result) => result.Reading();
}
