using Babel.Grains.Engine;
using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Training;

/// <summary>
/// Parameters of <c>babel finetune --data-parallel N</c>: the artifact keys of the base model folder and of a folder
/// holding the instructions file <paramref name="InstructionsFile"/> (under its own name), the options, the ranks, the micro-batches of each global batch and
/// the step timeout (as <see cref="PretrainJobParameters"/>).
/// </summary>
public sealed record FinetuneJobParameters(string Model, string Instructions, string InstructionsFile, PretrainingOptions Options, int Ranks, int MicroBatches, double StepTimeoutSeconds);

/// <summary>The tuned model folder as the leader stored it, its <c>training.json</c> (base model and instructions named by the local paths they were uploaded from), and the ranks' documents.</summary>
public sealed record FinetuneJobResult(byte[] ModelZip, InstructionTuningManifest Manifest, IReadOnlyList<TrainingRankResult> Ranks);

/// <summary>
/// Data-parallel instruction tuning on the job engine, the same way as <see cref="PretrainJob"/>: ranks as shards, the
/// gradient sum through the job's reduce grain, the leader's checkpoints in the artifact store, and the one-rank output
/// folder at the end. Prompts and padding are ignored targets, so each micro-batch is weighted by the global count of
/// response tokens.
/// </summary>
public sealed class FinetuneJob(IServiceProvider services) : JobKind<FinetuneJobParameters, TrainingRankSlice, FinetuneJobResult>
{
    public const string KindName = "finetune";

    public override string Name => KindName;

    protected override void Validate(FinetuneJobParameters p)
    {
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Instructions) || string.IsNullOrEmpty(p.InstructionsFile) || Path.GetFileName(p.InstructionsFile) != p.InstructionsFile) throw new UserInputException("A finetune job needs a model and instructions.");
        if (p.Options is null) throw new UserInputException("A finetune job needs its options.");
        p.Options.Validate();
        PretrainJob.ValidateRanks(p.Ranks, p.MicroBatches, p.Options.BatchSize, p.StepTimeoutSeconds);
    }

    protected override Task<IReadOnlyList<Shard<TrainingRankSlice>>> PlanAsync(FinetuneJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        return Task.FromResult(PretrainJob.RankPlan(p.Ranks, p.Options.Steps));
    }

    protected override ShardResult RunShard(ShardContext context, FinetuneJobParameters p, Shard<TrainingRankSlice> shard, CancellationToken cancellationToken)
    {
        var model = context.LocalFolder(p.Model, cancellationToken);
        var instructions = Path.Combine(context.LocalFolder(p.Instructions, cancellationToken), p.InstructionsFile);
        // Keyed by the local paths the run reads from (the base model's weights, later): another store's copy is another folder.
        var run = context.Cache.GetOrAdd($"instruction-tuning-run|{model}|{instructions}|{p.Options.SequenceLength}",
            () => InstructionTuningRun.Open(model, instructions, p.Options), r => r.Fitting.Sum(f => (long)f.Tokens.Length) * sizeof(long));
        var cacheRoot = services.GetService<IOptions<WorkerOptions>>()?.Value.CacheFolder ?? Path.Combine(Path.GetTempPath(), "babel-artifacts");
        var rank = new DataParallelRankRunner(services.GetRequiredService<IGrainFactory>(), context.Store, services.GetService<TrainingMetrics>(), context.JobId,
            shard.Id, context.Worker, Path.Combine(cacheRoot, "training", context.JobId, shard.Id), TimeSpan.FromSeconds(p.StepTimeoutSeconds)) { KeepRanks = p.Options.SyncEvery > 1 };
        var options = p.Options with { Threads = context.Threads };
        // Keys, not local paths: the same on every worker, so a checkpoint of one resumes on another.
        var fingerprint = run.Sha256 + "|" + p.Model;
        var result = rank.Run(p.Ranks, p.MicroBatches, options.Steps, _ => { },
            (work, dataParallel, hooks) =>
            {
                var (tuned, losses, before) = DataParallelInstructionTuning.TrainRank(run, options, work, fingerprint, dataParallel, hooks, cancellationToken);
                using (tuned)
                {
                    if (dataParallel.IsLeader) InstructionTuning.Finish(run, tuned, p.Options, losses, before, work, p.Model, p.Instructions);
                }
            }, cancellationToken);
        return ShardResult.Of(result, [KeyValuePair.Create("ranks_trained", result.Trained ? 1L : 0L), KeyValuePair.Create("steps", (long)result.Steps)]);
    }

    /// <summary>Uploads the base model folder and the instructions file (staged alone, under its name) and returns the job's parameters.</summary>
    public static async Task<FinetuneJobParameters> UploadInputsAsync(JobClient jobs, string modelDirectory, string instructionsPath, PretrainingOptions options, int ranks,
        int microBatches, TimeSpan stepTimeout, CancellationToken cancellationToken)
    {
        InstructionTuning.Read(instructionsPath);
        var staging = Directory.CreateTempSubdirectory("babel-instructions-").FullName;
        try
        {
            var name = Path.GetFileName(instructionsPath);
            File.Copy(instructionsPath, Path.Combine(staging, name));
            var instructions = await jobs.UploadFolderAsync(staging, "instructions", cancellationToken, uploadedFrom: Path.GetDirectoryName(Path.GetFullPath(instructionsPath)));
            var model = await jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken);
            return new FinetuneJobParameters(model, instructions, name, options, ranks, microBatches, stepTimeout.TotalSeconds);
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    public override async Task<FinetuneJobResult> AssembleAsync(FinishedJob<FinetuneJobParameters> job, CancellationToken cancellationToken)
    {
        var zip = await TrainedModelFolder.ReadAsync(job.Store, job.JobId, cancellationToken);
        var manifest = TrainedModelFolder.Manifest<InstructionTuningManifest>(zip);
        var p = job.Parameters;
        // The leader named the inputs by their keys; the manifest names the local paths they were uploaded from, as a one-rank run does.
        var instructions = job.Origin.FolderOf(p.Instructions) is { } folder ? Path.Combine(folder, p.InstructionsFile) : p.Instructions;
        manifest = manifest with { BaseModel = job.Origin.FolderOf(p.Model) ?? p.Model, Data = manifest.Data with { Instructions = instructions } };
        var ranks = await job.ReadShardsAsync<TrainingRankResult>(Enumerable.Range(0, p.Ranks).Select(PretrainJob.Member), cancellationToken);
        await DataParallelRankRunner.DeleteCheckpointsAsync(job.Store, job.JobId, job.Parameters.Options, cancellationToken);
        return new FinetuneJobResult(zip, manifest, ranks);
    }

    public override void Save(FinetuneJobResult result, string directory) => TrainedModelFolder.Save(result.ModelZip, result.Manifest, directory);

    public override string Summary(FinetuneJobResult result) => result.Manifest.Summary();
}
