using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>
/// <c>manifest.json</c> of a distillation folder: what made it (job, teacher, dataset, task, templates, sampling) and
/// what it holds (counts, teacher accuracy, tokens, calls). Written last, so a folder with a manifest is complete. The
/// teacher-generated folders of <c>babel distill generate</c> and the programmatic set of <c>babel data arithmetic</c>
/// share it; fields one of them lacks are left out of the file.
/// </summary>
public sealed record DistillationManifest
{
    /// <summary>The job that wrote the folder (none for the programmatic set).</summary>
    [JsonPropertyName("job")] public string? Job { get; init; }
    [JsonPropertyName("teacher")] public required TeacherManifest Teacher { get; init; }
    [JsonPropertyName("dataset")] public required DatasetManifest Dataset { get; init; }
    [JsonPropertyName("task")] public required string Task { get; init; }
    [JsonPropertyName("templates")] public TemplatesManifest? Templates { get; init; }
    [JsonPropertyName("sampling")] public required SamplingManifest Sampling { get; init; }
    [JsonPropertyName("seed")] public long Seed { get; init; }
    [JsonPropertyName("counts")] public required CountsManifest Counts { get; init; }
    /// <summary>Correct chains of thought over all of them.</summary>
    [JsonPropertyName("teacher_accuracy")] public double TeacherAccuracy { get; init; }
    /// <summary>Correct chains of thought over those with a readable answer.</summary>
    [JsonPropertyName("teacher_accuracy_parsed")] public double? TeacherAccuracyParsed { get; init; }
    [JsonPropertyName("tokens_in")] public long? TokensIn { get; init; }
    [JsonPropertyName("tokens_out")] public long? TokensOut { get; init; }
    [JsonPropertyName("teacher_calls")] public long? TeacherCalls { get; init; }
    [JsonPropertyName("cache_hits")] public long? CacheHits { get; init; }
    [JsonPropertyName("files")] public required IReadOnlyList<string> Files { get; init; }
    /// <summary>The job's wall time, from submission to its end.</summary>
    [JsonPropertyName("wall_seconds")] public double? WallSeconds { get; init; }

    private static readonly JsonSerializerOptions _json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public string ToJson() => JsonSerializer.Serialize(this, _json) + "\n";

    /// <summary>Writes <c>manifest.json</c> into <paramref name="directory"/> atomically.</summary>
    public void Save(string directory) => AtomicFile.WriteAllText(Path.Combine(directory, DistillationFiles.Manifest), ToJson());

    /// <summary>The manifest of the distillation folder <paramref name="directory"/>; a missing or unreadable one is one sentence.</summary>
    public static DistillationManifest Load(string directory)
    {
        var path = Path.Combine(directory, DistillationFiles.Manifest);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; pass the --out folder of 'babel distill generate' or 'babel data arithmetic'.");
        try
        {
            var manifest = JsonSerializer.Deserialize<DistillationManifest>(File.ReadAllBytes(path), _json);
            return manifest is { Task: not null, Teacher: not null, Dataset: not null, Sampling: not null, Counts: not null, Files: not null }
                ? manifest
                : throw new UserInputException($"{path} is not the manifest of 'babel distill generate' (it lacks task, teacher, dataset, sampling, counts or files); rerun the command that wrote the folder.");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not a valid distillation manifest ({e.Message}); rerun the command that wrote the folder.", e);
        }
    }

    /// <summary>The dataset file the folder was made from, as a full path (a relative one is relative to <paramref name="directory"/>); null when not recorded.</summary>
    public string? DatasetFile(string directory) => string.IsNullOrEmpty(Dataset.File) ? null : Path.GetFullPath(Dataset.File, Path.GetFullPath(directory));
}

/// <summary>Who wrote the chains of thought: <c>local</c> (a model folder), <c>openai</c> (an endpoint) or <c>programmatic</c>.</summary>
public sealed record TeacherManifest
{
    [JsonPropertyName("kind")] public required string Kind { get; init; }
    [JsonPropertyName("generator")] public string? Generator { get; init; }
    [JsonPropertyName("wrong_fraction")] public double? WrongFraction { get; init; }
    [JsonPropertyName("base_url")] public string? BaseUrl { get; init; }
    /// <summary>The artifact key of a local teacher's model folder, or the model name an endpoint serves.</summary>
    [JsonPropertyName("model")] public string? Model { get; init; }
    /// <summary>The local folder a local teacher was uploaded from.</summary>
    [JsonPropertyName("model_folder")] public string? ModelFolder { get; init; }
    [JsonPropertyName("batch_size")] public int? BatchSize { get; init; }
    [JsonPropertyName("api")] public string? Api { get; init; }
    /// <summary>The name of the environment variable the workers read the key from (never the key).</summary>
    [JsonPropertyName("api_key_env")] public string? ApiKeyEnv { get; init; }
    [JsonPropertyName("concurrency")] public int? Concurrency { get; init; }
    [JsonPropertyName("requests_per_minute")] public double? RequestsPerMinute { get; init; }
    [JsonPropertyName("tokens_per_minute")] public double? TokensPerMinute { get; init; }
    [JsonPropertyName("max_attempts")] public int? MaxAttempts { get; init; }
    [JsonPropertyName("request_timeout_seconds")] public double? RequestTimeoutSeconds { get; init; }
}

/// <summary>The questions: format, file (full path, or relative to the folder), artifact key, split, how many the file holds and the limit.</summary>
public sealed record DatasetManifest
{
    [JsonPropertyName("format")] public required string Format { get; init; }
    [JsonPropertyName("file")] public string? File { get; init; }
    [JsonPropertyName("artifact")] public string? Artifact { get; init; }
    [JsonPropertyName("split")] public required string Split { get; init; }
    [JsonPropertyName("questions_in_file")] public long QuestionsInFile { get; init; }
    [JsonPropertyName("limit")] public int Limit { get; init; }
}

/// <summary>The prompt templates, by name, repository file and SHA-256.</summary>
public sealed record TemplatesManifest(
    [property: JsonPropertyName("cot")] TemplateManifest Cot,
    [property: JsonPropertyName("evaluation")] TemplateManifest Evaluation)
{
    public static TemplatesManifest Of(PromptTemplates templates) => new(TemplateManifest.Of(templates.ChainOfThought), TemplateManifest.Of(templates.Evaluation));
}

/// <summary>One prompt template: its name, its file in the repository and the SHA-256 of its text.</summary>
public sealed record TemplateManifest(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("sha256")] string Sha256)
{
    public static TemplateManifest Of(PromptTemplate template) => new(template.Name, $"src/Modeling/Distillation/Templates/{template.Name}.txt", template.Sha256);
}

/// <summary>How the teacher was sampled.</summary>
public sealed record SamplingManifest
{
    [JsonPropertyName("cots")] public int Cots { get; init; }
    [JsonPropertyName("evaluations")] public int Evaluations { get; init; }
    [JsonPropertyName("temperature")] public double? Temperature { get; init; }
    [JsonPropertyName("top_p")] public double? TopP { get; init; }
    [JsonPropertyName("max_new_tokens")] public int? MaxNewTokens { get; init; }
    [JsonPropertyName("seed")] public long Seed { get; init; }
    [JsonPropertyName("stop")] public IReadOnlyList<string>? Stop { get; init; }
}

/// <summary>Records and outcomes: questions, chains of thought and evaluations parsed, unparseable, failed and correct, and failed calls.</summary>
public sealed record CountsManifest
{
    [JsonPropertyName("questions")] public long Questions { get; init; }
    [JsonPropertyName("test_questions")] public long? TestQuestions { get; init; }
    [JsonPropertyName("cots")] public long Cots { get; init; }
    [JsonPropertyName("cots_parsed")] public long CotsParsed { get; init; }
    [JsonPropertyName("cots_unparseable")] public long? CotsUnparseable { get; init; }
    [JsonPropertyName("cots_failed")] public long? CotsFailed { get; init; }
    [JsonPropertyName("cots_correct")] public long CotsCorrect { get; init; }
    [JsonPropertyName("gold_unparseable")] public long? GoldUnparseable { get; init; }
    [JsonPropertyName("evaluations")] public long Evaluations { get; init; }
    [JsonPropertyName("evaluations_parsed")] public long? EvaluationsParsed { get; init; }
    [JsonPropertyName("evaluations_unparseable")] public long? EvaluationsUnparseable { get; init; }
    [JsonPropertyName("evaluations_failed")] public long? EvaluationsFailed { get; init; }
    [JsonPropertyName("evaluation_labels")] public required EvaluationLabelCounts EvaluationLabels { get; init; }
    [JsonPropertyName("failures")] public long? Failures { get; init; }
}

/// <summary>Self-evaluations per parsed verdict.</summary>
public sealed record EvaluationLabelCounts
{
    [JsonPropertyName("correct")] public long Correct { get; init; }
    [JsonPropertyName("wrong")] public long Wrong { get; init; }
    [JsonPropertyName("uncertain")] public long? Uncertain { get; init; }
}
