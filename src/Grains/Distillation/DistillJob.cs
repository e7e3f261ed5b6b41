using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Microsoft.Extensions.DependencyInjection;

namespace Babel.Grains.Distillation;

/// <summary>
/// Parameters of a distillation-data job. <see cref="Teacher"/> is <c>local</c> (then <see cref="Model"/> is the artifact key of
/// the model folder) or <c>openai</c> (then <see cref="BaseUrl"/> and <see cref="TeacherModel"/>; the key is read on the worker
/// from the environment variable <see cref="ApiKeyVariable"/>, so it never travels in the spec). <see cref="Dataset"/> is the
/// artifact key of a folder holding <see cref="DatasetFile"/>.
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
    double MaxDelaySeconds = 60);

/// <summary>One shard: a contiguous slice of the dataset's questions.</summary>
public sealed record DistillShardParameters(int Start, int Count);

/// <summary>
/// Teacher chain-of-thought and self-evaluation generation ("Mind's Mirror") as a job: shards are slices of questions; a
/// shard runs <see cref="DistillationGenerator"/> with the job's teacher and writes its records as the shard result. Every
/// teacher call goes through the <see cref="TeacherCache"/> in the artifact store, so a retried shard, a resumed job or a
/// rerun with the same teacher and sampling reproduces its records without calling the teacher again.
/// </summary>
public sealed class DistillJob(IServiceProvider services) : IJobKind
{
    public const string KindName = "distill";
    public const string DefaultApiKeyVariable = "BABEL_TEACHER_API_KEY";

    public string Name => KindName;

    public static string Serialize<T>(T value) => JobParameters.Serialize(value);

    public static DistillJobParameters ParseParameters(string json)
    {
        var p = JobParameters.Deserialize<DistillJobParameters>(json, KindName);
        DistillationTasks.Parse(p.Task ?? "");
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
        if (p.Api is not ("chat" or "completions")) throw new UserInputException($"Unknown teacher API '{p.Api}'; use chat or completions.");
        if (p.Cots < 1 || p.Evaluations < 0) throw new UserInputException("--cots must be at least 1 and --evals zero or more.");
        if (p.Temperature < 0 || !(p.TopP > 0 && p.TopP <= 1) || p.MaxNewTokens < 1) throw new UserInputException("--temperature must be zero or more, --top-p in (0, 1] and --max-new-tokens at least 1.");
        if (p.QuestionsPerShard < 1 || p.BatchSize < 1 || p.Concurrency < 1 || p.MaxAttempts < 1 || p.Limit < 0)
        {
            throw new UserInputException("--questions-per-shard, --batch-size, --concurrency and --max-attempts must be at least 1, and --limit zero (all) or more.");
        }
        return p;
    }

    public static IReadOnlyList<DistillationQuestion> Questions(DistillJobParameters p, string folder)
    {
        var questions = DistillationDataset.Read(p.DatasetFormat, Path.Combine(folder, p.DatasetFile), p.Split);
        return p.Limit > 0 && p.Limit < questions.Count ? [.. questions.Take(p.Limit)] : questions;
    }

    public async Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var questions = Questions(p, await artifacts.LocalFolderAsync(p.Dataset, cancellationToken));
        var plan = new List<ShardSpec>();
        for (int start = 0, index = 0; start < questions.Count; start += p.QuestionsPerShard, index++)
        {
            var count = Math.Min(p.QuestionsPerShard, questions.Count - start);
            plan.Add(new ShardSpec(string.Create(CultureInfo.InvariantCulture, $"q{index:D5}"), Serialize(new DistillShardParameters(start, count)), count));
        }
        return plan;
    }

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var slice = JobParameters.Deserialize<DistillShardParameters>(shard.Parameters, KindName);
        var questions = Questions(p, context.LocalFolder(p.Dataset, cancellationToken)).Skip(slice.Start).Take(slice.Count).ToList();
        if (questions.Count != slice.Count) throw new InvalidOperationException($"Shard {shard.ShardId} expects {slice.Count} questions from {slice.Start} but the dataset has {questions.Count} there.");
        var store = services.GetRequiredService<IArtifactStore>();
        using var teacher = CreateTeacher(p, context, cancellationToken);
        var task = DistillationTasks.Parse(p.Task);
        var generator = new DistillationGenerator(teacher, new TeacherCache(store), PromptTemplates.For(task), Settings(p));
        var output = WorkerThreadContext.Run(() => generator.RunAsync(questions, cancellationToken));
        var totals = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, output.Totals);
        return new ShardResult(JsonSerializer.SerializeToUtf8Bytes(output, TeacherCache.Json), totals);
    }

    public static DistillationSettings Settings(DistillJobParameters p) =>
        new(DistillationTasks.Parse(p.Task), p.Cots, p.Evaluations, p.Temperature, p.TopP, p.MaxNewTokens, p.Seed);

    private ITeacher CreateTeacher(DistillJobParameters p, ShardContext context, CancellationToken cancellationToken)
    {
        if (p.Teacher == "local")
        {
            TorchRuntime.Initialize(context.Threads);
            var (model, tokenizer) = context.Models.Get(p.Model!, context.LocalFolder(p.Model!, cancellationToken));
            if (tokenizer is null) throw new UserInputException($"The teacher model {p.Model} has no tokenizer.json; a local teacher needs one.");
            return new LocalTeacher(model, tokenizer, p.Model!, p.BatchSize);
        }
        var limit = new TeacherRateLimit(p.RequestsPerMinute, p.TokensPerMinute);
        var limiter = limit.RequestsPerMinute > 0 || limit.TokensPerMinute > 0
            ? new GrainRateLimiter(services.GetRequiredService<IGrainFactory>(), p.BaseUrl!.TrimEnd('/'), limit)
            : null;
        return new OpenAiTeacher(OpenAiOptions(p), limiter);
    }

    public static OpenAiTeacherOptions OpenAiOptions(DistillJobParameters p) => new()
    {
        BaseUrl = p.BaseUrl!,
        Model = p.TeacherModel!,
        ApiKey = Environment.GetEnvironmentVariable(p.ApiKeyVariable),
        Api = p.Api,
        MaxAttempts = p.MaxAttempts,
        Timeout = TimeSpan.FromSeconds(p.TimeoutSeconds),
        BaseDelay = TimeSpan.FromSeconds(p.BaseDelaySeconds),
        MaxDelay = TimeSpan.FromSeconds(p.MaxDelaySeconds),
        Concurrency = p.Concurrency,
    };

    /// <summary>A shard's records, as its result document holds them.</summary>
    public static DistillationOutput ReadShard(byte[] content) =>
        JsonSerializer.Deserialize<DistillationOutput>(content, TeacherCache.Json) ?? throw new InvalidDataException("An empty distillation shard result.");
}
