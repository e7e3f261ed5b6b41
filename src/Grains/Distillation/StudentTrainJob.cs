using Babel.Grains.Engine;
using Babel.Grains.Training;
using Babel.Modeling.Distillation;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Distillation;

/// <summary>
/// Parameters of <c>babel distill train --data-parallel N</c>: the artifact key of a folder holding
/// <see cref="StudentCorpus.FileName"/>, the run's options (the student a preset or an uploaded model folder's key), the
/// ranks, the micro-batches of each global batch and the step timeout (as <see cref="PretrainJobParameters"/>).
/// </summary>
public sealed record StudentTrainParameters(string Corpus, StudentOptions Options, int Ranks, int MicroBatches, double StepTimeoutSeconds);

/// <summary>The student's output folder as the leader stored it (a zip: the one-rank <c>distill train</c> layout) and its metrics.</summary>
public sealed record StudentTrainResult(byte[] FolderZip, StudentMetrics Metrics, IReadOnlyList<TrainingRankResult> Ranks);

/// <summary>
/// One student trained data-parallel on the job engine, as <see cref="PretrainJob"/>: ranks as shards, each computing its
/// micro-batches of every global batch of both stages (<see cref="StudentTrainer.TrainRank"/>), gradients summed through
/// the job's reduce grain by the same <see cref="DataParallelRankRunner"/>, the leader's checkpoints (named by the steps of
/// both stages in a row) in the artifact store, and the one-rank output folder at the end.
/// </summary>
public sealed class StudentTrainJob(IServiceProvider services) : JobKind<StudentTrainParameters, TrainingRankSlice, StudentTrainResult>
{
    public const string KindName = "distill-train";

    public override string Name => KindName;

    protected override void Validate(StudentTrainParameters p)
    {
        if (string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("A student training job needs a corpus; pass --data DIR.");
        if (p.Options is null) throw new UserInputException("A student training job needs its options.");
        p.Options.Validate();
        PretrainJob.ValidateRanks(p.Ranks, p.MicroBatches, p.Options.BatchSize, p.StepTimeoutSeconds);
    }

    protected override Task<IReadOnlyList<Shard<TrainingRankSlice>>> PlanAsync(StudentTrainParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken) =>
        Task.FromResult(PretrainJob.RankPlan(p.Ranks, p.Options.TotalSteps));

    protected override ShardResult RunShard(ShardContext context, StudentTrainParameters p, Shard<TrainingRankSlice> shard, CancellationToken cancellationToken)
    {
        var corpusFile = Path.Combine(context.LocalFolder(p.Corpus, cancellationToken), StudentCorpus.FileName);
        var corpus = context.Cache.GetOrAdd(corpusFile, () => StudentCorpus.Read(corpusFile), _ => 2 * new FileInfo(corpusFile).Length);
        var options = StudentGridJob.IsPreset(p.Options.Student) ? p.Options : p.Options with { Student = context.LocalFolder(p.Options.Student, cancellationToken) };
        var cacheRoot = services.GetService<IOptions<WorkerOptions>>()?.Value.CacheFolder ?? Path.Combine(Path.GetTempPath(), "babel-artifacts");
        var runner = new DataParallelRankRunner(services.GetRequiredService<IGrainFactory>(), context.Store, services.GetService<TrainingMetrics>(), context.JobId,
            shard.Id, context.Worker, Path.Combine(cacheRoot, "training", context.JobId, shard.Id), TimeSpan.FromSeconds(p.StepTimeoutSeconds)) { KeepRanks = p.Options.SyncEvery > 1 };
        var result = runner.Run(p.Ranks, p.MicroBatches, p.Options.TotalSteps, _ => { }, (work, rank, hooks) => TrainRank(corpus, options, work, rank, hooks, cancellationToken),
            cancellationToken);
        return ShardResult.Of(result, [KeyValuePair.Create("ranks_trained", result.Trained ? 1L : 0L), KeyValuePair.Create("steps", (long)result.Steps)]);
    }

    /// <summary>
    /// One rank's training in the runner's <paramref name="work"/> folder, laid out as a one-rank <c>distill train</c> output
    /// folder (<c>checkpoint/</c>, history; on the leader at the end metrics, predictions and the chosen model).
    /// </summary>
    internal static void TrainRank(StudentCorpus corpus, StudentOptions options, string work, Modeling.Training.DataParallel.DataParallelRank rank, Modeling.Training.CheckpointHooks hooks,
        CancellationToken cancellationToken)
    {
        var checkpoint = Path.Combine(work, StudentTrainer.CheckpointFolder);
        var trained = StudentTrainer.TrainRank(corpus, options, checkpoint, rank, step => hooks.Written?.Invoke(step), cancellationToken, historyDirectory: work);
        if (trained is var (metrics, predictions)) StudentTrainer.WriteOutputs(work, checkpoint, metrics, predictions, StudentTrainer.ModelFolder);
    }

    /// <summary>Uploads the corpus (and the student's model folder, when it is one) and returns the job's parameters.</summary>
    public static async Task<StudentTrainParameters> UploadInputsAsync(JobClient jobs, StudentCorpus corpus, StudentOptions options, int ranks, int microBatches,
        TimeSpan stepTimeout, CancellationToken cancellationToken)
    {
        var grid = await StudentGridJob.UploadInputsAsync(jobs, corpus, options, [options.Setting], [options.Labels], [options.Student], [options.Seed], cancellationToken);
        return new StudentTrainParameters(grid.Corpus, options with { Student = grid.Students[0] }, ranks, microBatches, stepTimeout.TotalSeconds);
    }

    public override async Task<StudentTrainResult> AssembleAsync(FinishedJob<StudentTrainParameters> job, CancellationToken cancellationToken)
    {
        var zip = await TrainedModelFolder.ReadAsync(job.Store, job.JobId, cancellationToken);
        var metrics = TrainedModelFolder.Manifest<StudentMetrics>(zip, StudentTrainer.MetricsFile);
        // The leader named a model student by its worker's copy; the metrics name the folder it was uploaded from, as a one-rank run does.
        var student = job.Parameters.Options.Student;
        if (!StudentGridJob.IsPreset(student)) metrics = metrics with { Options = metrics.Options with { Student = job.Origin.FolderOf(student) ?? student } };
        var ranks = await job.ReadShardsAsync<TrainingRankResult>(Enumerable.Range(0, job.Parameters.Ranks).Select(PretrainJob.Member), cancellationToken);
        await DeleteCheckpointsAsync(job.Store, job.JobId, job.Parameters.Options, cancellationToken);
        return new StudentTrainResult(zip, metrics, ranks);
    }

    /// <summary>The leader checkpoints at every evaluation of each stage and at each stage's end, named by the steps of both stages in a row.</summary>
    internal static async Task DeleteCheckpointsAsync(IArtifactStore store, string jobId, StudentOptions o, CancellationToken cancellationToken)
    {
        var first = o.SelfEvaluationStageSteps;
        var steps = new SortedSet<int>();
        if (first > 0) foreach (var s in o.Stage(first).CheckpointSteps()) steps.Add(s);
        foreach (var s in o.Stage(o.DistillationStageSteps).CheckpointSteps()) steps.Add(first + s);
        foreach (var step in steps) await store.DeleteAsync(DataParallelRankRunner.CheckpointKey(jobId, step), cancellationToken);
        await store.DeleteAsync(DataParallelRankRunner.LatestKey(jobId), cancellationToken);
    }

    public override void Save(StudentTrainResult result, string directory) =>
        TrainedModelFolder.Save(result.FolderZip, directory, StudentTrainer.MetricsFile, _ => StudentTrainer.SaveMetrics(directory, result.Metrics));

    public override string Summary(StudentTrainResult result) =>
        $"{result.Metrics.Options.Setting}: test accuracy {result.Metrics.TestAccuracy:P1} ({result.Ranks.Count(r => r.Trained)} rank(s) trained)";
}
