using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Babel.Grains.Engine;
using Babel.Modeling.Chat;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Runtime;
using Babel.Contracts;
using Babel.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Babel.Grains.Distillation;

/// <summary>
/// Parameters of a distillation-data job. <see cref="Teacher"/> is <c>local</c> (then <see cref="Model"/> is the artifact key of
/// the model folder) or <c>openai</c> (then <see cref="BaseUrl"/> and <see cref="TeacherModel"/>; the key is read on the worker
/// from the environment variable <see cref="ApiKeyVariable"/>, which the silo must allow, so it never travels in the spec).
/// <see cref="Dataset"/> is the artifact key of a folder holding <see cref="DatasetFile"/>. More than
/// <see cref="MaxFailureRate"/> of the teacher calls failing for good fails the job; <see cref="Parquet"/> adds the Parquet form.
/// </summary>
public sealed record DistillJobParameters(
    string Teacher,
    string Dataset,
    string DatasetFile,
    string DatasetFormat,
    string Split,
    string Task,
    string? Model = null,
    string? BaseUrl = null,
    string? TeacherModel = null,
    string ApiKeyVariable = DistillJob.DefaultApiKeyVariable,
    string Api = "chat",
    int Limit = 0,
    int Cots = 5,
    int Evaluations = 5,
    double Temperature = 0.7,
    double TopP = 1.0,
    int MaxNewTokens = 256,
    long Seed = 0,
    int QuestionsPerShard = 8,
    int BatchSize = 8,
    int Concurrency = 8,
    double RequestsPerMinute = 0,
    double TokensPerMinute = 0,
    int MaxAttempts = 6,
    double TimeoutSeconds = 120,
    double BaseDelaySeconds = 1,
    double MaxDelaySeconds = 60,
    double MaxFailureRate = DistillJob.DefaultMaxFailureRate,
    bool Parquet = false,
    string Dtype = "float32");

/// <summary>One shard: a contiguous slice of the dataset's questions.</summary>
public sealed record DistillShardParameters(int Start, int Count);

/// <summary>
/// Teacher chain-of-thought and self-evaluation generation ("Mind's Mirror") as a job: shards are slices of questions; a
/// shard runs <see cref="DistillationGenerator"/> with the job's teacher and writes its records as the shard result. Every
/// teacher call goes through the <see cref="TeacherCache"/> in the artifact store, so a retried shard, a resumed job or a
/// rerun with the same teacher and sampling reproduces its records without calling the teacher again. The finished job is
/// a <see cref="DistillationFolder"/>, made only of the job's parameters, totals, shard documents and origin.
/// </summary>
public sealed class DistillJob(IServiceProvider services) : JobKind<DistillJobParameters, DistillShardParameters, DistillationFolder>
{
    public const string KindName = "distill";
    public const string DefaultApiKeyVariable = "BABEL_TEACHER_API_KEY";
    public const double DefaultMaxFailureRate = 0.05;
    /// <summary>Shorter than the engine's default: the shard a killed client's embedded worker held is re-run this soon after a rerun starts.</summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(30);

    public override string Name => KindName;

    protected override void Validate(DistillJobParameters p)
    {
        DistillationTasks.Parse(p.Task ?? "");
        ModelDtypes.ParseForJob(p.Dtype ?? "");
        switch (p.Teacher)
        {
            case "local" when string.IsNullOrEmpty(p.Model):
                throw new UserInputException("A local teacher needs a model folder: --teacher local:MODEL_DIR.");
            case "openai" when string.IsNullOrEmpty(p.BaseUrl) || !Uri.TryCreate(p.BaseUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"):
                throw new UserInputException($"The teacher URL '{p.BaseUrl}' is not an http(s) URL; give --teacher openai:http://HOST:PORT/v1.");
            case "openai" when string.IsNullOrEmpty(p.TeacherModel):
                throw new UserInputException("An openai teacher needs --teacher-model NAME (the model name the endpoint serves).");
            case "local" or "openai":
                break;
            default:
                throw new UserInputException($"Unknown teacher '{p.Teacher}'; use --teacher local:MODEL_DIR or openai:BASE_URL.");
        }
        if (!TeacherAccess.IsVariableName(p.ApiKeyVariable)) throw new UserInputException($"--api-key-env '{p.ApiKeyVariable}' is not an environment variable name.");
        if (p.Api is not ("chat" or "completions")) throw new UserInputException($"Unknown teacher API '{p.Api}'; use chat or completions.");
        if (p.Cots < 1 || p.Evaluations < 0) throw new UserInputException("--cots must be at least 1 and --evals zero or more.");
        if (p.Temperature < 0 || !(p.TopP > 0 && p.TopP <= 1) || p.MaxNewTokens < 1) throw new UserInputException("--temperature must be zero or more, --top-p in (0, 1] and --max-new-tokens at least 1.");
        if (p.QuestionsPerShard < 1 || p.BatchSize < 1 || p.Concurrency < 1 || p.MaxAttempts < 1 || p.Limit < 0)
        {
            throw new UserInputException("--questions-per-shard, --batch-size, --concurrency and --max-attempts must be at least 1, and --limit zero (all) or more.");
        }
        if (!(p.MaxFailureRate >= 0 && p.MaxFailureRate <= 1)) throw new UserInputException($"--max-failure-rate must lie in [0, 1] (got {p.MaxFailureRate}).");
    }

    public static IReadOnlyList<DistillationQuestion> Questions(DistillJobParameters p, string folder)
    {
        var questions = DistillationDataset.Read(p.DatasetFormat, Path.Combine(folder, p.DatasetFile), p.Split);
        return p.Limit > 0 && p.Limit < questions.Count ? [.. questions.Take(p.Limit)] : questions;
    }

    /// <summary>The job's questions, read from the dataset file once per worker process and shared by every shard of the dataset.</summary>
    public static IReadOnlyList<DistillationQuestion> CachedQuestions(ShardContext context, DistillJobParameters p, CancellationToken cancellationToken)
    {
        var folder = context.LocalFolder(p.Dataset, cancellationToken);
        return context.Cache.GetOrAdd(string.Create(CultureInfo.InvariantCulture, $"{p.Dataset}/{p.DatasetFile}|{p.DatasetFormat}|{p.Split}|{p.Limit}"),
            () => Questions(p, folder), _ => 2 * new FileInfo(Path.Combine(folder, p.DatasetFile)).Length);
    }

    /// <summary>The shard id of the <paramref name="index"/>-th slice of questions.</summary>
    public static string ShardId(int index) => string.Create(CultureInfo.InvariantCulture, $"q{index:D5}");

    protected override async Task<IReadOnlyList<Shard<DistillShardParameters>>> PlanAsync(DistillJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var questions = Questions(p, await artifacts.LocalFolderAsync(p.Dataset, cancellationToken));
        var plan = new List<Shard<DistillShardParameters>>();
        for (int start = 0, index = 0; start < questions.Count; start += p.QuestionsPerShard, index++)
        {
            var count = Math.Min(p.QuestionsPerShard, questions.Count - start);
            plan.Add(new(ShardId(index), new DistillShardParameters(start, count), count));
        }
        return plan;
    }

    protected override ShardResult RunShard(ShardContext context, DistillJobParameters p, Shard<DistillShardParameters> shard, CancellationToken cancellationToken)
    {
        var slice = shard.Slice;
        var questions = CachedQuestions(context, p, cancellationToken).Skip(slice.Start).Take(slice.Count).ToList();
        if (questions.Count != slice.Count) throw new InvalidOperationException($"Shard {shard.Id} expects {slice.Count} questions from {slice.Start} but the dataset has {questions.Count} there.");
        using var teacher = CreateTeacher(p, context, cancellationToken);
        var generator = new DistillationGenerator(teacher, new TeacherCache(context.Store), PromptTemplates.For(DistillationTasks.Parse(p.Task)), Settings(p));
        var output = WorkerThreadContext.Run(() => generator.RunAsync(questions, cancellationToken));
        // Snake_case, as the records are in the folder's files.
        return new ShardResult(JsonSerializer.SerializeToUtf8Bytes(output, TeacherCache.Json), ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, output.Totals));
    }

    public static DistillationSettings Settings(DistillJobParameters p) =>
        new(DistillationTasks.Parse(p.Task), p.Cots, p.Evaluations, p.Temperature, p.TopP, p.MaxNewTokens, p.Seed);

    private ITeacher CreateTeacher(DistillJobParameters p, ShardContext context, CancellationToken cancellationToken)
    {
        if (p.Teacher == "local")
        {
            TorchRuntime.Initialize(context.Threads);
            var folder = context.LocalFolder(p.Model!, cancellationToken);
            var dtype = ModelDtypes.ParseForJob(p.Dtype);
            var (model, tokenizer) = context.Models.Get(p.Model!, folder, dtype);
            if (tokenizer is null) throw new UserInputException($"The teacher model {p.Model} has no tokenizer.json; a local teacher needs one.");
            // The teacher cache is keyed by the teacher's identity: the same weights in another element type answer otherwise.
            var identity = dtype == ModelDtype.Float32 ? p.Model! : $"{p.Model}@{ModelDtypes.Name(dtype)}";
            return new LocalTeacher(model, tokenizer, PromptFormat.Load(folder, model.Config, tokenizer), identity, p.BatchSize);
        }
        // Whoever submitted the job named the URL and the variable: this silo decides whether they may be used.
        var access = Access();
        access.CheckEndpoint(p.BaseUrl!);
        var limit = new TeacherRateLimit(p.RequestsPerMinute, p.TokensPerMinute);
        var limiter = limit.RequestsPerMinute > 0 || limit.TokensPerMinute > 0
            ? new GrainRateLimiter(services.GetRequiredService<IGrainFactory>(), p.BaseUrl!.TrimEnd('/'), limit)
            : null;
        return new OpenAiTeacher(OpenAiOptions(p, access.ReadKey(p.ApiKeyVariable)), limiter);
    }

    /// <summary>This silo's teacher allow-lists (<see cref="WorkerOptions"/>).</summary>
    private TeacherAccess Access() => services.GetService<IOptions<WorkerOptions>>()?.Value is { } o
        ? new TeacherAccess(TeacherAccess.List(o.TeacherHosts), TeacherAccess.List(o.TeacherKeyVariables), o.TeacherPlainHttp)
        : TeacherAccess.Default;

    public static OpenAiTeacherOptions OpenAiOptions(DistillJobParameters p, string? apiKey) => new()
    {
        BaseUrl = p.BaseUrl!,
        Model = p.TeacherModel!,
        ApiKey = apiKey,
        Api = p.Api,
        MaxAttempts = p.MaxAttempts,
        Timeout = TimeSpan.FromSeconds(p.TimeoutSeconds),
        BaseDelay = TimeSpan.FromSeconds(p.BaseDelaySeconds),
        MaxDelay = TimeSpan.FromSeconds(p.MaxDelaySeconds),
        Concurrency = p.Concurrency,
    };

    /// <summary>
    /// Everything before a distillation job is submitted, so bad input is one sentence before any work starts: the options
    /// (<paramref name="p"/> without its artifact keys yet), every line of the dataset file, the local teacher's model
    /// folder or the openai teacher (<see cref="PreflightAsync"/>); then uploads the dataset file and the model folder and
    /// returns the parameters naming them.
    /// </summary>
    public async Task<DistillJobParameters> PrepareAsync(JobClient jobs, DistillJobParameters p, string datasetFile, string? modelDirectory, bool cluster,
        CancellationToken cancellationToken)
    {
        Parse(Serialize(p with { Dataset = "-", Model = modelDirectory ?? p.Model }));
        DistillationDataset.Read(p.DatasetFormat, datasetFile, p.Split);
        if (modelDirectory is not null)
        {
            ModelCheckpoint.Validate(modelDirectory);
            if (!File.Exists(Path.Combine(modelDirectory, "tokenizer.json"))) throw new UserInputException($"{modelDirectory} has no tokenizer.json; a local teacher needs one.");
        }
        await PreflightAsync(p, cluster, cancellationToken);
        var staging = Directory.CreateTempSubdirectory("babel-dataset-");
        try
        {
            // The dataset file alone in a folder, so the artifact is only it; the job's origin records the file's own folder.
            var name = Path.GetFileName(datasetFile);
            File.Copy(datasetFile, Path.Combine(staging.FullName, name));
            var dataset = await jobs.UploadFolderAsync(staging.FullName, "datasets", cancellationToken, uploadedFrom: Path.GetDirectoryName(Path.GetFullPath(datasetFile)));
            var model = modelDirectory is null ? null : await jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken);
            return p with { Dataset = dataset, DatasetFile = name, Model = model };
        }
        finally
        {
            staging.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Checks an openai teacher before the job is submitted, so a wrong URL, key or model name is one sentence at once.
    /// Embedded (<paramref name="cluster"/> false), this process is the silo: its allow-lists apply and the key is read and
    /// sent as the workers will. A cluster client holds neither, so it only checks that the URL answers.
    /// </summary>
    private async Task PreflightAsync(DistillJobParameters p, bool cluster, CancellationToken cancellationToken)
    {
        if (p.Teacher != "openai") return;
        if (cluster)
        {
            await OpenAiTeacher.ProbeAsync(OpenAiOptions(p, apiKey: null), checkKey: false, cancellationToken);
            return;
        }
        var access = Access();
        access.CheckEndpoint(p.BaseUrl!);
        await OpenAiTeacher.ProbeAsync(OpenAiOptions(p, access.ReadKey(p.ApiKeyVariable)), checkKey: true, cancellationToken);
    }

    public override async Task<DistillationFolder> AssembleAsync(FinishedJob<DistillJobParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var totals = job.Status.Totals;
        long T(string name) => totals.GetValueOrDefault(name);
        var shards = Enumerable.Range(0, (int)((T("questions") + p.QuestionsPerShard - 1) / p.QuestionsPerShard)).Select(ShardId).ToList();
        DistillationOutput Read(string shard) =>
            ReadShard(job.ReadShardBytesAsync(shard, cancellationToken).GetAwaiter().GetResult());
        var failures = T("cots_failed") + T("evaluations_failed");
        var calls = T("cots") + T("evaluations") + failures;
        if (calls > 0 && failures > p.MaxFailureRate * calls)
        {
            var reason = shards.SelectMany(s => Read(s).Failures).GroupBy(f => f.Reason, StringComparer.Ordinal).MaxBy(g => g.Count())!.Key;
            throw new JobFailedException(job.JobId, string.Create(CultureInfo.InvariantCulture,
                $"job {job.JobId} failed: {failures} of {calls} teacher calls failed ({100.0 * failures / calls:F1}%), more than --max-failure-rate {p.MaxFailureRate}; the most frequent reason: {reason}. Fix the cause and rerun (answered calls come from the cache), or raise --max-failure-rate to keep the records."));
        }
        var datasetFolder = job.Origin.FolderOf(p.Dataset);
        var manifest = Manifest(job.JobId, p, totals, p.Model is null ? null : job.Origin.FolderOf(p.Model),
            datasetFolder is null ? null : Path.Combine(datasetFolder, p.DatasetFile), await QuestionsInFileAsync(job, cancellationToken), job.WallSeconds);
        return new DistillationFolder(manifest, shards, Read, p.Parquet);
    }

    public override void Save(DistillationFolder result, string directory) => result.Save(directory);

    public override string Summary(DistillationFolder result) => result.Summary();

    /// <summary>How many questions the uploaded dataset file holds (before <c>--limit</c>), read from the artifact store.</summary>
    private static async Task<int> QuestionsInFileAsync(FinishedJob<DistillJobParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var bytes = await job.Store.GetBytesAsync($"{p.Dataset}/{p.DatasetFile}", cancellationToken)
            ?? throw new InvalidOperationException($"The dataset {p.Dataset}/{p.DatasetFile} of job {job.JobId} is missing from the artifact store.");
        // Read as File.ReadLines reads the file on the client: byte-order mark and line endings alike.
        using var reader = new StreamReader(new MemoryStream(bytes, writable: false));
        var lines = new List<string>();
        while (await reader.ReadLineAsync(cancellationToken) is { } line) lines.Add(line);
        return DistillationDataset.Read(p.DatasetFormat, lines, p.DatasetFile, p.Split).Count;
    }

    private static DistillationManifest Manifest(string jobId, DistillJobParameters p, IReadOnlyDictionary<string, long> totals, string? modelFolder, string? datasetFile,
        int questionsInFile, double wallSeconds)
    {
        long T(string name) => totals.GetValueOrDefault(name);
        double Ratio(long a, long b) => b == 0 ? 0 : (double)a / b;
        var local = p.Teacher == "local";
        return new DistillationManifest
        {
            Job = jobId,
            Teacher = local
                ? new TeacherManifest { Kind = "local", Model = p.Model, ModelFolder = modelFolder, BatchSize = p.BatchSize }
                : new TeacherManifest
                {
                    Kind = "openai", BaseUrl = p.BaseUrl, Model = p.TeacherModel, Api = p.Api, ApiKeyEnv = p.ApiKeyVariable, Concurrency = p.Concurrency,
                    RequestsPerMinute = p.RequestsPerMinute, TokensPerMinute = p.TokensPerMinute, MaxAttempts = p.MaxAttempts, RequestTimeoutSeconds = p.TimeoutSeconds,
                },
            Dataset = new DatasetManifest { Format = p.DatasetFormat, File = datasetFile, Artifact = p.Dataset, Split = p.Split, QuestionsInFile = questionsInFile, Limit = p.Limit },
            Task = p.Task,
            Templates = TemplatesManifest.Of(PromptTemplates.For(DistillationTasks.Parse(p.Task))),
            Sampling = new SamplingManifest
            {
                Cots = p.Cots, Evaluations = p.Evaluations, Temperature = p.Temperature, TopP = p.TopP, MaxNewTokens = p.MaxNewTokens, Seed = p.Seed,
                Stop = DistillationSettings.Stop,
            },
            Seed = p.Seed,
            Counts = new CountsManifest
            {
                Questions = T("questions"), Cots = T("cots"), CotsParsed = T("cots_parsed"), CotsUnparseable = T("cots_unparseable"), CotsFailed = T("cots_failed"),
                CotsCorrect = T("cots_correct"), GoldUnparseable = T("gold_unparseable"), Evaluations = T("evaluations"), EvaluationsParsed = T("evaluations_parsed"),
                EvaluationsUnparseable = T("evaluations_unparseable"), EvaluationsFailed = T("evaluations_failed"),
                EvaluationLabels = new EvaluationLabelCounts { Correct = T("evaluations_correct"), Wrong = T("evaluations_wrong"), Uncertain = T("evaluations_uncertain") },
                Failures = T("cots_failed") + T("evaluations_failed"),
            },
            TeacherAccuracy = Ratio(T("cots_correct"), T("cots")),
            TeacherAccuracyParsed = Ratio(T("cots_correct"), T("cots_parsed")),
            TokensIn = T("tokens_in"),
            TokensOut = T("tokens_out"),
            TeacherCalls = T("teacher_calls"),
            CacheHits = T("cache_hits"),
            Files = [DistillationFiles.Cots, DistillationFiles.Evaluations, DistillationFiles.Failures, DistillationFiles.Raw + "/",
                .. p.Parquet ? new[] { DistillationParquet.CotsFile, DistillationParquet.EvaluationsFile } : []],
            WallSeconds = wallSeconds,
        };
    }

    /// <summary>A shard's records, as its result document holds them.</summary>
    public static DistillationOutput ReadShard(byte[] content) =>
        JsonSerializer.Deserialize<DistillationOutput>(content, TeacherCache.Json) ?? throw new InvalidDataException("An empty distillation shard result.");
}
