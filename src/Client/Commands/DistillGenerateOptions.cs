using System.CommandLine;
using Babel.Grains.Distillation;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>The options of <c>babel distill generate</c>, and the job parameters, dataset file and teacher model folder they name.</summary>
internal sealed class DistillGenerateOptions
{
    private static readonly DistillJobParameters _defaults = new("local", "", "", "jsonl", "train", "math");

    public Option<string> Teacher { get; } = new("--teacher") { Description = "local:MODEL_DIR or local:org/name[@revision] from the Hugging Face cache (generation on the device workers) or openai:BASE_URL (e.g. openai:http://127.0.0.1:8000/v1).", Required = true };
    public Option<string?> TeacherModel { get; } = new("--teacher-model") { Description = "Model name sent to an openai teacher." };
    public Option<string> ApiKeyVariable { get; } = new("--api-key-env") { Description = $"Environment variable holding an openai teacher's API key, read on the workers (never logged); the silo allows names starting with {TeacherAccess.KeyVariablePrefix} and those it lists.", DefaultValueFactory = _ => DistillJob.DefaultApiKeyVariable };
    public Option<string> Api { get; } = new("--teacher-api") { Description = "chat (/chat/completions) or completions (/completions).", DefaultValueFactory = _ => _defaults.Api };
    public Option<string> Dataset { get; } = new("--dataset") { Description = "gsm8k:PATH or jsonl:PATH (a file, or a folder with SPLIT.jsonl).", Required = true };
    public Option<string> Task { get; } = new("--task") { Description = "math, choice or nli.", DefaultValueFactory = _ => _defaults.Task };
    public Option<string> Split { get; } = new("--split") { Description = "Split name: which SPLIT.jsonl of a dataset folder, and the prefix of GSM8K ids.", DefaultValueFactory = _ => _defaults.Split };
    public Option<int> Limit { get; } = new("--limit") { Description = "Only the first N questions (0 = all).", DefaultValueFactory = _ => 0 };
    public Option<int> Cots { get; } = new("--cots") { Description = "Chains of thought per question.", DefaultValueFactory = _ => _defaults.Cots };
    public Option<int> Evaluations { get; } = new("--evals") { Description = "Self-evaluations per chain of thought.", DefaultValueFactory = _ => _defaults.Evaluations };
    public Option<double> Temperature { get; } = new("--temperature") { Description = "Sampling temperature.", DefaultValueFactory = _ => _defaults.Temperature };
    public Option<double> TopP { get; } = new("--top-p") { Description = "Nucleus sampling (1 = off).", DefaultValueFactory = _ => _defaults.TopP };
    public Option<int> MaxNewTokens { get; } = new("--max-new-tokens") { Description = "Tokens per completion at most.", DefaultValueFactory = _ => _defaults.MaxNewTokens };
    public Option<long> Seed { get; } = new("--seed") { Description = "Seed; each call's seed is derived from it and the call's place.", DefaultValueFactory = _ => _defaults.Seed };
    public Option<int> QuestionsPerShard { get; } = new("--questions-per-shard") { Description = "Questions per shard of the job.", DefaultValueFactory = _ => _defaults.QuestionsPerShard };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Rows per batched generation of a local teacher.", DefaultValueFactory = _ => _defaults.BatchSize };
    public Option<int> Concurrency { get; } = new("--concurrency") { Description = "Requests in flight per worker for an openai teacher.", DefaultValueFactory = _ => _defaults.Concurrency };
    public Option<double> RequestsPerMinute { get; } = new("--requests-per-minute") { Description = "Cluster-wide request budget of the openai endpoint (0 = unlimited).", DefaultValueFactory = _ => 0 };
    public Option<double> TokensPerMinute { get; } = new("--tokens-per-minute") { Description = "Cluster-wide token budget of the openai endpoint (0 = unlimited).", DefaultValueFactory = _ => 0 };
    public Option<int> MaxAttempts { get; } = new("--max-attempts") { Description = "Attempts per openai request (429, 5xx, timeouts and malformed responses are retried).", DefaultValueFactory = _ => _defaults.MaxAttempts };
    public Option<double> Timeout { get; } = new("--request-timeout") { Description = "Seconds an openai request may take.", DefaultValueFactory = _ => _defaults.TimeoutSeconds };
    public Option<double> RetryDelay { get; } = new("--retry-delay") { Description = "Seconds of the first backoff (doubled per attempt, with jitter).", DefaultValueFactory = _ => _defaults.BaseDelaySeconds };
    public Option<double> MaxFailureRate { get; } = new("--max-failure-rate") { Description = "Share of teacher calls that may fail for good; past it the job ends as failed (exit code 3).", DefaultValueFactory = _ => _defaults.MaxFailureRate };
    public Option<string> Dtype { get; } = ModelOption.CreateJobDtype();
    public Option<bool> Parquet { get; } = new("--parquet") { Description = "Also write cots.parquet and evaluations.parquet." };
    public Option<string> Output { get; } = new("--out") { Description = "Output folder: cots.jsonl, evaluations.jsonl, failures.jsonl, raw/, manifest.json.", Required = true };
    public Option<double> Lease { get; } = new("--lease-seconds") { Description = "A shard's lease, renewed every third of it; a shard of a killed worker is re-run after it expires.", DefaultValueFactory = _ => DistillJob.DefaultLease.TotalSeconds };

    public void AddTo(Command command)
    {
        Api.AcceptOnlyFromAmong("chat", "completions");
        foreach (var option in new Option[]
        {
            Teacher, TeacherModel, ApiKeyVariable, Api, Dataset, Task, Split, Limit, Cots, Evaluations, Temperature, TopP, MaxNewTokens, Seed,
            QuestionsPerShard, BatchSize, Dtype, Concurrency, RequestsPerMinute, TokensPerMinute, MaxAttempts, Timeout, RetryDelay, MaxFailureRate, Parquet, Output, Lease,
        })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>The parameters (artifact keys still empty), the dataset file, and the model folder of a local teacher.</summary>
    public (DistillJobParameters Parameters, string DatasetFile, string? ModelDirectory) Read(ParseResult parse)
    {
        var (format, path) = DistillationDataset.ParseSpec(parse.GetValue(Dataset)!);
        var split = parse.GetValue(Split)!;
        var file = DistillationDataset.ResolveFile(path, split);
        var (teacher, target) = ParseTeacher(parse.GetValue(Teacher)!);
        var parameters = _defaults with
        {
            Teacher = teacher, DatasetFormat = format, Split = split, Task = DistillationTasks.Parse(parse.GetValue(Task)!).Name(),
            BaseUrl = teacher == "openai" ? target : null, TeacherModel = parse.GetValue(TeacherModel), ApiKeyVariable = parse.GetValue(ApiKeyVariable)!, Api = parse.GetValue(Api)!,
            Limit = parse.GetValue(Limit), Cots = parse.GetValue(Cots), Evaluations = parse.GetValue(Evaluations), Temperature = parse.GetValue(Temperature),
            TopP = parse.GetValue(TopP), MaxNewTokens = parse.GetValue(MaxNewTokens), Seed = parse.GetValue(Seed), QuestionsPerShard = parse.GetValue(QuestionsPerShard),
            BatchSize = parse.GetValue(BatchSize), Concurrency = parse.GetValue(Concurrency), RequestsPerMinute = parse.GetValue(RequestsPerMinute),
            TokensPerMinute = parse.GetValue(TokensPerMinute), MaxAttempts = parse.GetValue(MaxAttempts), TimeoutSeconds = parse.GetValue(Timeout),
            BaseDelaySeconds = parse.GetValue(RetryDelay), MaxFailureRate = parse.GetValue(MaxFailureRate), Parquet = parse.GetValue(Parquet),
            Dtype = parse.GetValue(Dtype)!,
        };
        return (parameters, file, teacher == "local" ? HuggingFaceCache.ResolveModel(target) : null);
    }

    /// <summary>The lease of the job's shards.</summary>
    public TimeSpan LeaseOf(ParseResult parse) => parse.GetValue(Lease) is var seconds && seconds >= 1
        ? TimeSpan.FromSeconds(seconds)
        : throw new UserInputException($"--lease-seconds must be at least 1 (got {seconds}).");

    public static (string Kind, string Target) ParseTeacher(string spec)
    {
        var colon = spec.IndexOf(':', StringComparison.Ordinal);
        var kind = colon < 0 ? "" : spec[..colon];
        if (kind is not ("local" or "openai") || colon == spec.Length - 1)
        {
            throw new UserInputException($"--teacher '{spec}' is not understood; give local:MODEL_DIR or openai:BASE_URL.");
        }
        return (kind, spec[(colon + 1)..]);
    }
}
