using Babel.Grains.Engine;
using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Training;

/// <summary>
/// Parameters of <c>babel pretrain --data-parallel N</c>: the artifact keys of the corpus and of a folder holding the
/// tokenizer files, the preset, the languages (null: all), the options of the run, the ranks (one shard each), the
/// micro-batches the global batch is cut into (at least the ranks; a group that lost ranks accumulates them), and how
/// long a step may wait for a rank before the group goes on without it.
/// </summary>
public sealed record PretrainJobParameters(string Corpus, string Tokenizer, string Preset, string? Languages, PretrainingOptions Options, int Ranks,
    int MicroBatches, double StepTimeoutSeconds);

/// <summary>One rank's shard: its index in the full group.</summary>
public sealed record TrainingRankSlice(int Rank);

/// <summary>
/// A rank's shard document: whether it trained (or was not needed: its group had gone on without it), as leader, to which
/// step, on which worker, and its timing in its last group: steps timed, mean step and gradient-exchange seconds, the
/// floats exchanged per step, and the mean forward-and-backward seconds (layers' gradients start their exchange meanwhile;
/// the exchange seconds are what is left to wait for after it).
/// </summary>
public sealed record TrainingRankResult(string Member, bool Trained, bool Leader, int Steps, string? Model, string? Worker = null, int TimedSteps = 0,
    double MeanStepSeconds = 0, double MeanExchangeSeconds = 0, int GradientValues = 0, double MeanComputeSeconds = 0);

/// <summary>
/// The trained model folder as the leader stored it (a zip) and its <c>training.json</c>, with the corpus named by the
/// folder it was uploaded from; and every rank's document, in rank order.
/// </summary>
public sealed record PretrainJobResult(byte[] ModelZip, PretrainingManifest Manifest, IReadOnlyList<TrainingRankResult> Ranks)
{
    /// <summary>The ranks that trained to the end.</summary>
    public IReadOnlyList<TrainingRankResult> Trained => [.. Ranks.Where(r => r.Trained)];
}

/// <summary>
/// Data-parallel pretraining on the job engine. Each rank is a shard; the ranks run at once on different device workers,
/// form a group in their job's <see cref="Contracts.ITrainingGroupGrain"/>, and each step sum their gradients, sharded over one
/// <see cref="GradientReduceGrain"/> per rank (<see cref="GrainGradientExchange"/>), so every replica steps identically. The leader (rank 0 of the group) zips the
/// model folder being trained to the artifact store every checkpoint; when a rank stops answering, the others rejoin and
/// resume from that checkpoint with the same global batch (fewer ranks accumulate more micro-batches), and the leader
/// stores the finished folder — the layout of a one-rank <c>babel pretrain</c> — for <see cref="AssembleAsync"/>.
/// </summary>
public sealed class PretrainJob(IServiceProvider services) : JobKind<PretrainJobParameters, TrainingRankSlice, PretrainJobResult>
{
    public const string KindName = "pretrain";

    /// <summary>The shard id of rank <paramref name="rank"/>: names sort in rank order.</summary>
    public static string Member(int rank) => $"rank-{rank:D3}";

    public override string Name => KindName;

    /// <summary>The checks every data-parallel training kind makes of its ranks, micro-batches and step timeout.</summary>
    public static void ValidateRanks(int ranks, int microBatches, int batchSize, double stepTimeoutSeconds)
    {
        if (ranks < 1 || ranks > 999) throw new UserInputException($"--data-parallel must be between 1 and 999 (got {ranks}).");
        if (microBatches < ranks || microBatches > batchSize)
        {
            throw new UserInputException($"The global batch of {batchSize} rows cannot be cut into {microBatches} micro-batches for {ranks} ranks; use a --batch-size of at least {ranks}.");
        }
        if (!(stepTimeoutSeconds > 0)) throw new UserInputException($"The step timeout must be positive (got {stepTimeoutSeconds}).");
    }

    /// <summary>The plan of every data-parallel training kind: one shard per rank, weighed by the steps it runs.</summary>
    public static IReadOnlyList<Shard<TrainingRankSlice>> RankPlan(int ranks, int steps) =>
        [.. Enumerable.Range(0, ranks).Select(r => new Shard<TrainingRankSlice>(Member(r), new TrainingRankSlice(r), steps))];

    protected override void Validate(PretrainJobParameters p)
    {
        if (string.IsNullOrEmpty(p.Corpus) || string.IsNullOrEmpty(p.Tokenizer)) throw new UserInputException("A pretraining job needs a corpus and a tokenizer.");
        if (!ModelPresets.Names.Contains(p.Preset, StringComparer.Ordinal)) throw new UserInputException($"Unknown model preset '{p.Preset}'; use one of: {string.Join(", ", ModelPresets.Names)}.");
        if (p.Options is null) throw new UserInputException("A pretraining job needs its options.");
        p.Options.Validate();
        ValidateRanks(p.Ranks, p.MicroBatches, p.Options.BatchSize, p.StepTimeoutSeconds);
    }

    protected override Task<IReadOnlyList<Shard<TrainingRankSlice>>> PlanAsync(PretrainJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        return Task.FromResult(RankPlan(p.Ranks, p.Options.Steps));
    }

    protected override ShardResult RunShard(ShardContext context, PretrainJobParameters p, Shard<TrainingRankSlice> shard, CancellationToken cancellationToken)
    {
        var corpus = context.LocalFolder(p.Corpus, cancellationToken);
        var tokenizer = context.LocalFolder(p.Tokenizer, cancellationToken);
        // Read and tokenised once per worker process: a rank that rejoins, or the next job on the same corpus, reuses it. Keyed by
        // the local folders, which the run keeps reading (held-out documents): another store's copy of the same bytes is another folder.
        var run = context.Cache.GetOrAdd($"pretraining-run|{corpus}|{tokenizer}|{p.Preset}|{p.Languages}",
            () => PretrainingRun.Open(corpus, tokenizer, p.Preset, p.Languages), r => r.Train.Length * sizeof(long));
        var cacheRoot = services.GetService<IOptions<WorkerOptions>>()?.Value.CacheFolder ?? Path.Combine(Path.GetTempPath(), "babel-artifacts");
        var rank = new DataParallelRankRunner(services.GetRequiredService<IGrainFactory>(), context.Store, services.GetService<TrainingMetrics>(), context.JobId,
            shard.Id, context.Worker, Path.Combine(cacheRoot, "training", context.JobId, shard.Id), TimeSpan.FromSeconds(p.StepTimeoutSeconds)) { KeepRanks = p.Options.SyncEvery > 1 };
        var options = p.Options with { Threads = context.Threads };
        var result = rank.Run(p.Ranks, p.MicroBatches, options.Steps, work =>
            {
                if (!File.Exists(Path.Combine(work, "tokenizer.json"))) PretrainingWorkflow.CopyTokenizer(tokenizer, work);
            },
            (work, dataParallel, hooks) =>
            {
                var (model, losses) = DataParallelPretraining.TrainRank(run, options, work, dataParallel, hooks, cancellationToken: cancellationToken);
                using (model)
                {
                    if (dataParallel.IsLeader) PretrainingWorkflow.Finish(run, model, p.Options, losses, work);
                }
            }, cancellationToken);
        return ShardResult.Of(result, [KeyValuePair.Create("ranks_trained", result.Trained ? 1L : 0L), KeyValuePair.Create("steps", (long)result.Steps)]);
    }

    /// <summary>
    /// Uploads the corpus and the tokenizer files of <paramref name="tokenizerDirectory"/> (staged alone, so nothing else
    /// of that folder travels) and returns the job's parameters.
    /// </summary>
    public static async Task<PretrainJobParameters> UploadInputsAsync(JobClient jobs, string corpusDirectory, string tokenizerDirectory, string preset,
        string? languages, PretrainingOptions options, int ranks, int microBatches, TimeSpan stepTimeout, CancellationToken cancellationToken)
    {
        var staging = Directory.CreateTempSubdirectory("babel-tokenizer-").FullName;
        try
        {
            PretrainingWorkflow.CopyTokenizer(tokenizerDirectory, staging);
            var tokenizer = await jobs.UploadFolderAsync(staging, "tokenizers", cancellationToken, uploadedFrom: tokenizerDirectory);
            var corpus = await jobs.UploadFolderAsync(corpusDirectory, "corpora", cancellationToken);
            return new PretrainJobParameters(corpus, tokenizer, preset, languages, options, ranks, microBatches, stepTimeout.TotalSeconds);
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    public override async Task<PretrainJobResult> AssembleAsync(FinishedJob<PretrainJobParameters> job, CancellationToken cancellationToken)
    {
        var zip = await TrainedModelFolder.ReadAsync(job.Store, job.JobId, cancellationToken);
        var manifest = TrainedModelFolder.Manifest<PretrainingManifest>(zip);
        // The worker read the corpus from its artifact cache; the manifest names the folder it was uploaded from, as a one-rank run does.
        manifest = manifest with { Data = manifest.Data with { Corpus = job.Origin.FolderOf(job.Parameters.Corpus) ?? job.Parameters.Corpus } };
        var ranks = await job.ReadShardsAsync<TrainingRankResult>(Enumerable.Range(0, job.Parameters.Ranks).Select(Member), cancellationToken);
        await DataParallelRankRunner.DeleteCheckpointsAsync(job.Store, job.JobId, job.Parameters.Options, cancellationToken);
        return new PretrainJobResult(zip, manifest, ranks);
    }

    public override void Save(PretrainJobResult result, string directory) => TrainedModelFolder.Save(result.ModelZip, result.Manifest, directory);

    public override string Summary(PretrainJobResult result) => result.Manifest.Summary();
}
