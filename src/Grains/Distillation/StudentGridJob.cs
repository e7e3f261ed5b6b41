using System.Security.Cryptography;
using System.Text;
using Babel.Grains.Engine;
using Babel.Grains.Training;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Distillation;

/// <summary>
/// Parameters of a student grid ("Mind's Mirror" ablation): the artifact key of a folder holding
/// <see cref="StudentCorpus.FileName"/>, the options every run shares, and the axes settings × labels × students × seeds.
/// A student is a preset name (<c>micro</c>, <c>tiny</c>, <c>small</c>) or the artifact key of an uploaded model folder
/// (<c>models/HASH</c>). With <paramref name="Ranks"/> &gt; 1 every run is data-parallel: that many shards, one per rank,
/// training it as <c>babel distill train --data-parallel</c> does (a rank waits at most <paramref name="StepTimeoutSeconds"/> for the others).
/// </summary>
public sealed record StudentGridParameters(string Corpus, StudentOptions Base, string[] Settings, string[] Labels, string[] Students, long[] Seeds, int Ranks = 1,
    double StepTimeoutSeconds = 90);

/// <summary>A grid shard: a run, and which of its ranks this shard is (0 when runs are not data-parallel).</summary>
public sealed record StudentGridSlice(StudentOptions Run, int Rank);

/// <summary>
/// The student ablation grid on the job engine: every (setting, labels, student, seed) is a shard that trains one student
/// with <see cref="StudentTrainer"/> and returns its <see cref="StudentMetrics"/> as the shard result. Each run's work
/// folder is zipped into the artifact store after every checkpoint (<see cref="CheckpointKey"/>), so a run whose silo dies
/// resumes on another silo from its last checkpoint with the same data order and RNG state. A run uses the thread count of
/// its options (not the worker's), so its result does not depend on which worker ran it.
/// </summary>
public sealed class StudentGridJob(IServiceProvider services) : JobKind<StudentGridParameters, StudentGridSlice, StudentGridReport>
{
    public const string KindName = "distill-grid";
    /// <summary>Artifact prefix of the runs' checkpoint zips; they are deleted once a grid's results are read.</summary>
    public const string CheckpointPrefix = "distill/students/";
    private const string ModelKeyPrefix = "models/";
    /// <summary>
    /// The workers renew a lease every third of it while a run is alive, so it only bounds how long a run of a dead silo
    /// (or of a killed embedded client) waits before another worker resumes it from its last checkpoint.
    /// </summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(180);

    public override string Name => KindName;

    protected override void Validate(StudentGridParameters p)
    {
        if (string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The student grid needs a corpus; pass --data DIR.");
        if (p.Base is null) throw new UserInputException("The student grid needs its base options.");
        if (p.Settings is not { Length: > 0 }) throw new UserInputException($"The student grid needs at least one setting; pass --settings with some of: {string.Join(", ", StudentSettings.All)}.");
        if (p.Labels is not { Length: > 0 }) throw new UserInputException("The student grid needs at least one label source; pass --labels gt, llm or gt,llm.");
        if (p.Students is not { Length: > 0 }) throw new UserInputException($"The student grid needs at least one student; pass --students with some of: {string.Join(", ", ModelPresets.Names)}.");
        if (p.Seeds is not { Length: > 0 }) throw new UserInputException("The student grid needs at least one seed; pass --seeds N with N ≥ 1.");
        foreach (var student in p.Students)
        {
            if (!IsPreset(student) && !(student ?? "").StartsWith(ModelKeyPrefix, StringComparison.Ordinal))
            {
                throw new UserInputException($"The student '{student}' is neither a preset ({string.Join(", ", ModelPresets.Names)}) nor an uploaded model folder; pass a preset name or a Babel model folder.");
            }
        }
        foreach (var run in Runs(p)) run.Validate();
        if (p.Ranks != 1) PretrainJob.ValidateRanks(p.Ranks, p.Ranks, p.Base.BatchSize, p.StepTimeoutSeconds);
    }

    /// <summary>Every run of the grid, in plan order (settings, then labels, then students, then seeds).</summary>
    public static IReadOnlyList<StudentOptions> Runs(StudentGridParameters p)
    {
        var runs = new List<StudentOptions>();
        foreach (var setting in p.Settings.Select(StudentSettings.Require).Distinct(StringComparer.Ordinal))
        {
            foreach (var labels in p.Labels.Select(StudentLabels.Require).Distinct(StringComparer.Ordinal))
            {
                foreach (var student in p.Students.Distinct(StringComparer.Ordinal))
                {
                    foreach (var seed in p.Seeds.Distinct())
                    {
                        runs.Add(p.Base with { Setting = setting, Labels = labels, Student = student, Seed = seed });
                    }
                }
            }
        }
        return runs;
    }

    public static bool IsPreset(string? student) => student is not null && ModelPresets.Names.Contains(student, StringComparer.Ordinal);

    /// <summary>A student's short name: the preset, or <c>model-</c> and the first 8 hex digits of an uploaded folder's hash.</summary>
    public static string StudentName(string student) => StudentGridReport.StudentName(student);

    /// <summary>The shard id of a run, e.g. <c>multi-cot-se-gt-micro-s1</c>.</summary>
    public static string ShardId(StudentOptions run) => $"{run.Setting}-{run.Labels}-{StudentName(run.Student)}-s{run.Seed}";

    /// <summary>The run's identity: a hash of the corpus key and its options, naming its local work folder and its checkpoint zip.</summary>
    public static string RunHash(string corpus, StudentOptions run) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(corpus + "|" + JobParameters.Serialize(run))))[..16];

    /// <summary>The artifact key of a run's checkpoint zip.</summary>
    public static string CheckpointKey(string corpus, StudentOptions run) => $"{CheckpointPrefix}{RunHash(corpus, run)}.zip";

    /// <summary>The shard id of rank <paramref name="rank"/> of a data-parallel run: the ranks of a run sort in rank order.</summary>
    public static string RankShardId(StudentOptions run, int rank) => $"{ShardId(run)}-{PretrainJob.Member(rank)}";

    /// <summary>The id a data-parallel run's ranks share: their reduce grain and their checkpoints in the store.</summary>
    public static string RunTrainingId(string jobId, string corpus, StudentOptions run) => $"{jobId}-{RunHash(corpus, run)}";

    protected override Task<IReadOnlyList<Shard<StudentGridSlice>>> PlanAsync(StudentGridParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        IReadOnlyList<Shard<StudentGridSlice>> shards = p.Ranks == 1
            ? [.. Runs(p).Select(run => new Shard<StudentGridSlice>(ShardId(run), new StudentGridSlice(run, 0), run.TotalSteps))]
            : [.. Runs(p).SelectMany(run => Enumerable.Range(0, p.Ranks).Select(r => new Shard<StudentGridSlice>(RankShardId(run, r), new StudentGridSlice(run, r), run.TotalSteps)))];
        return Task.FromResult(shards);
    }

    protected override ShardResult RunShard(ShardContext context, StudentGridParameters p, Shard<StudentGridSlice> shard, CancellationToken cancellationToken)
    {
        var run = shard.Slice.Run.Validate();
        // Read once per worker process: every run of the grid trains on the same corpus.
        var corpusFile = Path.Combine(context.LocalFolder(p.Corpus, cancellationToken), StudentCorpus.FileName);
        var corpus = context.Cache.GetOrAdd(p.Corpus, () => StudentCorpus.Read(corpusFile), _ => 2 * new FileInfo(corpusFile).Length);
        // An uploaded student is trained from its local copy; the metrics name it by its artifact key, as on every worker.
        var local = IsPreset(run.Student) ? run : run with { Student = context.LocalFolder(run.Student, cancellationToken) };
        // Beside the worker's artifact cache: a retry on this machine (or a rerun of a killed embedded client) resumes from it.
        var cache = services.GetService<IOptions<WorkerOptions>>()?.Value.CacheFolder ?? Path.Combine(Path.GetTempPath(), "babel-artifacts");
        if (p.Ranks > 1)
        {
            var training = RunTrainingId(context.JobId, p.Corpus, run);
            var runner = new DataParallelRankRunner(services.GetRequiredService<IGrainFactory>(), context.Store, services.GetService<TrainingMetrics>(), training, shard.Id,
                context.Worker, Path.Combine(cache, "training", training, shard.Id), TimeSpan.FromSeconds(p.StepTimeoutSeconds));
            var rank = runner.Run(p.Ranks, p.Ranks, run.TotalSteps, _ => { }, (folder, dataParallel, hooks) => StudentTrainJob.TrainRank(corpus, local, folder, dataParallel, hooks, cancellationToken),
                cancellationToken);
            return ShardResult.Of(rank, [KeyValuePair.Create("runs", rank.Leader ? 1L : 0L), KeyValuePair.Create("steps", (long)run.TotalSteps)]);
        }
        var work = Path.Combine(cache, "students", RunHash(p.Corpus, run));
        var metrics = TrainWithCheckpoints(context.Store, CheckpointKey(p.Corpus, run), corpus, local, work, cancellationToken: cancellationToken);
        metrics = metrics with { Options = metrics.Options with { Student = run.Student } };
        Directory.Delete(work, recursive: true);
        return ShardResult.Of(metrics, [KeyValuePair.Create("runs", 1L), KeyValuePair.Create("steps", (long)run.TotalSteps)]);
    }

    /// <summary>
    /// Trains (or resumes) one run in <paramref name="work"/>, zipping the whole folder to <paramref name="checkpointKey"/>
    /// after every checkpoint. When <paramref name="work"/> does not exist but the zip does (the run was started on another
    /// machine), the zip is unpacked first, so the run continues from its last uploaded checkpoint. A local folder, when
    /// present, is used as it is: it holds a checkpoint at least as consistent as the zip, and either resumes exactly.
    /// <paramref name="uploaded"/> is told the number of zips uploaded so far.
    /// </summary>
    public static StudentMetrics TrainWithCheckpoints(IArtifactStore store, string checkpointKey, StudentCorpus corpus, StudentOptions run, string work,
        IProgress<StudentProgress>? progress = null, Action<int>? uploaded = null, CancellationToken cancellationToken = default)
    {
        FolderCheckpoints.Restore(store, checkpointKey, work, cancellationToken);
        var uploads = 0;
        var (metrics, _) = StudentTrainer.Train(corpus, run, work, progress, () =>
        {
            FolderCheckpoints.Upload(store, checkpointKey, work, cancellationToken);
            uploaded?.Invoke(++uploads);
        }, cancellationToken);
        return metrics;
    }

    /// <summary>
    /// Every run's metrics in plan order, with the grid's setup: its job, where the corpus was read from (recorded in the
    /// uploaded corpus), the students (a model folder by the folder it was uploaded from) and the shared options. The runs'
    /// checkpoint zips are deleted here: they are kept until the results are read, so a shard retried after its training
    /// finished (its result write lost) resumes from its final checkpoint instead of training again.
    /// </summary>
    public override async Task<StudentGridReport> AssembleAsync(FinishedJob<StudentGridParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var runs = new List<StudentMetrics>();
        if (p.Ranks == 1)
        {
            runs.AddRange(await job.ReadShardsAsync<StudentMetrics>(Runs(p).Select(ShardId), cancellationToken));
            foreach (var run in Runs(p)) await job.Store.DeleteAsync(CheckpointKey(p.Corpus, run), cancellationToken);
        }
        else
        {
            // A data-parallel run's metrics are in the folder its leader stored; its checkpoints go once they are read.
            foreach (var run in Runs(p))
            {
                var training = RunTrainingId(job.JobId, p.Corpus, run);
                var metrics = TrainedModelFolder.Manifest<StudentMetrics>(await TrainedModelFolder.ReadAsync(job.Store, training, cancellationToken), StudentTrainer.MetricsFile);
                runs.Add(metrics with { Options = metrics.Options with { Student = run.Student } });
                await StudentTrainJob.DeleteCheckpointsAsync(job.Store, training, run, cancellationToken);
            }
        }
        var corpus = await job.Store.GetBytesAsync($"{p.Corpus}/{StudentCorpus.FileName}", cancellationToken)
            ?? throw new InvalidOperationException($"The corpus {p.Corpus} of job {job.JobId} is missing from the artifact store.");
        var (data, test) = StudentCorpus.ReadSources(corpus);
        var students = p.Students.Select(s => IsPreset(s) ? s : job.Origin.FolderOf(s) ?? s).ToList();
        return StudentGridReport.From(runs) with { Setup = new StudentGridSetup(job.JobId, data, test, students, p.Base) };
    }

    public override void Save(StudentGridReport result, string directory) => result.Save(directory);

    public override string Summary(StudentGridReport result) => result.Reading();

    /// <summary>
    /// Uploads the corpus and any student model folders (a student that is neither a preset nor a folder is one sentence)
    /// and returns the grid's parameters.
    /// </summary>
    public static async Task<StudentGridParameters> UploadInputsAsync(JobClient jobs, StudentCorpus corpus, StudentOptions baseOptions, IReadOnlyList<string> settings,
        IReadOnlyList<string> labels, IReadOnlyList<string> students, IReadOnlyList<long> seeds, CancellationToken cancellationToken, int ranks = 1, double stepTimeoutSeconds = 90)
    {
        var studentKeys = new List<string>();
        foreach (var student in students)
        {
            if (IsPreset(student)) studentKeys.Add(student);
            else if (Directory.Exists(student)) studentKeys.Add(await jobs.UploadFolderAsync(student, "models", cancellationToken));
            else throw new UserInputException($"The student '{student}' is neither a preset ({string.Join(", ", ModelPresets.Names)}) nor a model folder; pass a preset name or a Babel model folder.");
        }
        var staging = Directory.CreateTempSubdirectory("babel-student-corpus-");
        try
        {
            corpus.Save(Path.Combine(staging.FullName, StudentCorpus.FileName));
            var corpusKey = await jobs.UploadFolderAsync(staging.FullName, "datasets", cancellationToken);
            return new StudentGridParameters(corpusKey, baseOptions, [.. settings], [.. labels], [.. studentKeys], [.. seeds], ranks, stepTimeoutSeconds);
        }
        finally
        {
            staging.Delete(recursive: true);
        }
    }
}
