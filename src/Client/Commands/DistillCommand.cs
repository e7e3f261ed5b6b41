using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Grains.Distillation;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel distill generate</c>: teacher chains of thought and self-evaluations for a dataset, as a job.</summary>
internal static class DistillCommand
{
    public const string RawFolder = "raw";
    /// <summary>Shorter than the engine's default: the shard a killed client's embedded worker held is re-run this soon after a rerun starts.</summary>
    public const double DefaultLeaseSeconds = 30;

    public static Command Create()
    {
        var command = new Command("distill", "Self-evaluation distillation data (\"Mind's Mirror\").");
        command.Subcommands.Add(CreateGenerate());
        command.Subcommands.Add(StudentCommand.CreateTrain());
        command.Subcommands.Add(StudentGridCommand.Create());
        return command;
    }

    private static Command CreateGenerate()
    {
        var defaults = new DistillJobParameters("local", "", "", "jsonl", "train", "math");
        var engine = new EngineOptions();
        var teacher = new Option<string>("--teacher") { Description = "local:MODEL_DIR (generation on the device workers) or openai:BASE_URL (e.g. openai:http://127.0.0.1:8000/v1).", Required = true };
        var teacherModel = new Option<string?>("--teacher-model") { Description = "Model name sent to an openai teacher." };
        var apiKeyVariable = new Option<string>("--api-key-env") { Description = "Environment variable holding an openai teacher's API key (read on the workers, never logged).", DefaultValueFactory = _ => DistillJob.DefaultApiKeyVariable };
        var api = new Option<string>("--teacher-api") { Description = "chat (/chat/completions) or completions (/completions).", DefaultValueFactory = _ => defaults.Api };
        api.AcceptOnlyFromAmong("chat", "completions");
        var dataset = new Option<string>("--dataset") { Description = "gsm8k:PATH or jsonl:PATH (a file, or a folder with SPLIT.jsonl).", Required = true };
        var task = new Option<string>("--task") { Description = "math, choice or nli.", DefaultValueFactory = _ => defaults.Task };
        var split = new Option<string>("--split") { Description = "Split name: which SPLIT.jsonl of a dataset folder, and the prefix of GSM8K ids.", DefaultValueFactory = _ => defaults.Split };
        var limit = new Option<int>("--limit") { Description = "Only the first N questions (0 = all).", DefaultValueFactory = _ => 0 };
        var cots = new Option<int>("--cots") { Description = "Chains of thought per question.", DefaultValueFactory = _ => defaults.Cots };
        var evals = new Option<int>("--evals") { Description = "Self-evaluations per chain of thought.", DefaultValueFactory = _ => defaults.Evaluations };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature.", DefaultValueFactory = _ => defaults.Temperature };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling (1 = off).", DefaultValueFactory = _ => defaults.TopP };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens per completion at most.", DefaultValueFactory = _ => defaults.MaxNewTokens };
        var seed = new Option<long>("--seed") { Description = "Seed; each call's seed is derived from it and the call's place.", DefaultValueFactory = _ => defaults.Seed };
        var perShard = new Option<int>("--questions-per-shard") { Description = "Questions per shard of the job.", DefaultValueFactory = _ => defaults.QuestionsPerShard };
        var batch = new Option<int>("--batch-size") { Description = "Rows per batched generation of a local teacher.", DefaultValueFactory = _ => defaults.BatchSize };
        var concurrency = new Option<int>("--concurrency") { Description = "Requests in flight per worker for an openai teacher.", DefaultValueFactory = _ => defaults.Concurrency };
        var rpm = new Option<double>("--requests-per-minute") { Description = "Cluster-wide request budget of the openai endpoint (0 = unlimited).", DefaultValueFactory = _ => 0 };
        var tpm = new Option<double>("--tokens-per-minute") { Description = "Cluster-wide token budget of the openai endpoint (0 = unlimited).", DefaultValueFactory = _ => 0 };
        var attempts = new Option<int>("--max-attempts") { Description = "Attempts per openai request (429, 5xx, timeouts and malformed responses are retried).", DefaultValueFactory = _ => defaults.MaxAttempts };
        var timeout = new Option<double>("--request-timeout") { Description = "Seconds an openai request may take.", DefaultValueFactory = _ => defaults.TimeoutSeconds };
        var retryDelay = new Option<double>("--retry-delay") { Description = "Seconds of the first backoff (doubled per attempt, with jitter).", DefaultValueFactory = _ => defaults.BaseDelaySeconds };
        var output = new Option<string>("--out") { Description = "Output folder: cots.jsonl, evaluations.jsonl, failures.jsonl, raw/, manifest.json.", Required = true };
        var jobId = new Option<string?>("--job-id") { Description = "Job id; default: derived from the inputs, so rerunning resumes the same job." };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var parquet = new Option<bool>("--parquet") { Description = "Also write cots.parquet and evaluations.parquet." };
        var lease = new Option<double>("--lease-seconds") { Description = "A shard's lease, renewed every third of it; a shard of a killed worker is re-run after it expires.", DefaultValueFactory = _ => DefaultLeaseSeconds };
        var command = new Command("generate", "Sample chains of thought and self-evaluations from a teacher for every question of a dataset (a job; every teacher call is cached).")
        {
            teacher, teacherModel, apiKeyVariable, api, dataset, task, split, limit, cots, evals, temperature, topP, maxNew, seed,
            perShard, batch, concurrency, rpm, tpm, attempts, timeout, retryDelay, output, jobId, workers, lease, parquet,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var taskName = DistillationTasks.Parse(parse.GetValue(task)!).Name();
            var (format, path) = DistillationDataset.ParseSpec(parse.GetValue(dataset)!);
            var splitName = parse.GetValue(split)!;
            var file = DistillationDataset.ResolveFile(path, splitName);
            // Reads every line now, so a broken record is reported before any work starts.
            var questions = DistillationDataset.Read(format, file, splitName);
            var (teacherKind, teacherTarget) = ParseTeacher(parse.GetValue(teacher)!);
            var parameters = defaults with
            {
                Teacher = teacherKind,
                DatasetFile = Path.GetFileName(file),
                DatasetFormat = format,
                Split = splitName,
                Task = taskName,
                BaseUrl = teacherKind == "openai" ? teacherTarget : null,
                TeacherModel = parse.GetValue(teacherModel),
                ApiKeyVariable = parse.GetValue(apiKeyVariable)!,
                Api = parse.GetValue(api)!,
                Limit = parse.GetValue(limit),
                Cots = parse.GetValue(cots),
                Evaluations = parse.GetValue(evals),
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                MaxNewTokens = parse.GetValue(maxNew),
                Seed = parse.GetValue(seed),
                QuestionsPerShard = parse.GetValue(perShard),
                BatchSize = parse.GetValue(batch),
                Concurrency = parse.GetValue(concurrency),
                RequestsPerMinute = parse.GetValue(rpm),
                TokensPerMinute = parse.GetValue(tpm),
                MaxAttempts = parse.GetValue(attempts),
                TimeoutSeconds = parse.GetValue(timeout),
                BaseDelaySeconds = parse.GetValue(retryDelay),
            };
            // Dataset and model are placeholders until uploaded; checking now reports bad options before the engine starts.
            DistillJob.ParseParameters(DistillJob.Serialize(parameters with { Model = teacherTarget, Dataset = "-" }));
            if (teacherKind == "local")
            {
                ModelCheckpoint.Validate(teacherTarget);
                if (!File.Exists(Path.Combine(teacherTarget, "tokenizer.json"))) throw new UserInputException($"{teacherTarget} has no tokenizer.json; a local teacher needs one.");
            }
            else
            {
                await CheckReachableAsync(teacherTarget, cancellationToken);
            }
            await using var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken);
            var summary = await RunAsync(connection, parameters, teacherKind == "local" ? teacherTarget : null, file, questions.Count,
                parse.GetValue(output)!, parse.GetValue(jobId), parse.InvocationConfiguration.Error, cancellationToken, parse.GetValue(lease), parse.GetValue(parquet));
            parse.InvocationConfiguration.Output.WriteLine(summary);
            return 0;
        });
        return command;
    }

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

    /// <summary>Any HTTP answer (even 401 or 404) means the server is there; no answer at all is a user error, reported before the job starts.</summary>
    public static async Task CheckReachableAsync(string baseUrl, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            using var response = await http.GetAsync(baseUrl.TrimEnd('/') + "/models", cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new UserInputException($"Could not reach the teacher at {baseUrl} ({e.Message}); start the server or fix the URL after --teacher openai:.", e);
        }
    }

    public static async Task<string> RunAsync(EngineConnection connection, DistillJobParameters request, string? modelDirectory, string datasetFile,
        int datasetQuestions, string outDirectory, string? jobId, TextWriter progress, CancellationToken cancellationToken, double leaseSeconds = DefaultLeaseSeconds, bool parquet = false)
    {
        var stopwatch = Stopwatch.StartNew();
        var staging = Directory.CreateTempSubdirectory("babel-dataset-");
        string datasetKey;
        try
        {
            File.Copy(datasetFile, Path.Combine(staging.FullName, Path.GetFileName(datasetFile)));
            datasetKey = await connection.Jobs.UploadFolderAsync(staging.FullName, "datasets", cancellationToken);
            var parameters = request with
            {
                Dataset = datasetKey,
                Model = modelDirectory is null ? null : await connection.Jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken),
            };
            if (!(leaseSeconds >= 1)) throw new UserInputException($"--lease-seconds must be at least 1 (got {leaseSeconds}).");
            var spec = JobClient.Spec(DistillJob.KindName, DistillJob.Serialize(DistillJob.ParseParameters(DistillJob.Serialize(parameters))),
                leaseDuration: TimeSpan.FromSeconds(leaseSeconds));
            var id = jobId ?? JobClient.DefaultJobId(spec);
            // raw/ is rewritten from the job's shards: files of another job written into this folder before must not linger.
            var rawFolder = Path.Combine(outDirectory, RawFolder);
            if (Directory.Exists(rawFolder)) Directory.Delete(rawFolder, recursive: true);
            Directory.CreateDirectory(rawFolder);
            // A manifest marks a finished folder: an earlier one goes until this run has written everything again.
            File.Delete(Path.Combine(outDirectory, DistillationFiles.Manifest));
            var writer = new DistillOutputWriter(connection, id, outDirectory);
            using var stopRaw = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var rawLoop = writer.WriteRawWhileRunningAsync(stopRaw.Token);
            Contracts.JobStatus status;
            try
            {
                status = await JobProgress.RunAsync(connection, id, spec, progress, cancellationToken);
            }
            finally
            {
                await stopRaw.CancelAsync();
                await rawLoop;
            }
            staging.Delete(true);
            var counts = await writer.WriteAllAsync(cancellationToken);
            if (parquet) await DistillParquet.WriteAsync(outDirectory, cancellationToken);
            WriteManifest(outDirectory, id, parameters, modelDirectory, datasetFile, datasetQuestions, status.Totals, counts, stopwatch.Elapsed.TotalSeconds);
            var t = status.Totals;
            var accuracy = Ratio(t.GetValueOrDefault("cots_correct"), t.GetValueOrDefault("cots"));
            return string.Create(CultureInfo.InvariantCulture,
                $"{counts.Cots} chains of thought ({t.GetValueOrDefault("cots_unparseable")} unparseable, teacher accuracy {accuracy:P1}), {counts.Evaluations} evaluations ({t.GetValueOrDefault("evaluations_unparseable")} unparseable), {counts.Failures} failed calls: {Path.GetFullPath(outDirectory)}");
        }
        finally
        {
            if (staging.Exists) staging.Delete(true);
        }
    }

    private static double Ratio(long a, long b) => b == 0 ? 0 : (double)a / b;

    private static void WriteManifest(string outDirectory, string jobId, DistillJobParameters p, string? modelDirectory, string datasetFile, int datasetQuestions,
        IReadOnlyDictionary<string, long> totals, DistillOutputWriter.Counts counts, double wallSeconds)
    {
        var task = DistillationTasks.Parse(p.Task);
        var templates = PromptTemplates.For(task);
        JsonObject Template(PromptTemplate t) => new() { ["name"] = t.Name, ["file"] = $"src/Modeling/Distillation/Templates/{t.Name}.txt", ["sha256"] = t.Sha256 };
        long T(string name) => totals.GetValueOrDefault(name);
        var manifest = new JsonObject
        {
            ["job"] = jobId,
            ["teacher"] = p.Teacher == "local"
                ? new JsonObject { ["kind"] = "local", ["model"] = p.Model, ["model_folder"] = Path.GetFullPath(modelDirectory!), ["batch_size"] = p.BatchSize }
                : new JsonObject
                {
                    ["kind"] = "openai", ["base_url"] = p.BaseUrl, ["model"] = p.TeacherModel, ["api"] = p.Api, ["api_key_env"] = p.ApiKeyVariable,
                    ["concurrency"] = p.Concurrency, ["requests_per_minute"] = p.RequestsPerMinute, ["tokens_per_minute"] = p.TokensPerMinute,
                    ["max_attempts"] = p.MaxAttempts, ["request_timeout_seconds"] = p.TimeoutSeconds,
                },
            ["dataset"] = new JsonObject
            {
                ["format"] = p.DatasetFormat, ["file"] = Path.GetFullPath(datasetFile), ["artifact"] = p.Dataset, ["split"] = p.Split,
                ["questions_in_file"] = datasetQuestions, ["limit"] = p.Limit,
            },
            ["task"] = p.Task,
            ["templates"] = new JsonObject { ["cot"] = Template(templates.ChainOfThought), ["evaluation"] = Template(templates.Evaluation) },
            ["sampling"] = new JsonObject
            {
                ["cots"] = p.Cots, ["evaluations"] = p.Evaluations, ["temperature"] = p.Temperature, ["top_p"] = p.TopP,
                ["max_new_tokens"] = p.MaxNewTokens, ["seed"] = p.Seed, ["stop"] = new JsonArray([.. DistillationSettings.Stop.Select(s => (JsonNode)s)]),
            },
            ["seed"] = p.Seed,
            ["counts"] = new JsonObject
            {
                ["questions"] = T("questions"),
                ["cots"] = T("cots"), ["cots_parsed"] = T("cots_parsed"), ["cots_unparseable"] = T("cots_unparseable"), ["cots_failed"] = T("cots_failed"),
                ["cots_correct"] = T("cots_correct"), ["gold_unparseable"] = T("gold_unparseable"),
                ["evaluations"] = T("evaluations"), ["evaluations_parsed"] = T("evaluations_parsed"), ["evaluations_unparseable"] = T("evaluations_unparseable"),
                ["evaluations_failed"] = T("evaluations_failed"),
                ["evaluation_labels"] = new JsonObject { ["correct"] = T("evaluations_correct"), ["wrong"] = T("evaluations_wrong"), ["uncertain"] = T("evaluations_uncertain") },
                ["failures"] = counts.Failures,
            },
            ["teacher_accuracy"] = Ratio(T("cots_correct"), T("cots")),
            ["teacher_accuracy_parsed"] = Ratio(T("cots_correct"), T("cots_parsed")),
            ["tokens_in"] = T("tokens_in"),
            ["tokens_out"] = T("tokens_out"),
            ["teacher_calls"] = T("teacher_calls"),
            ["cache_hits"] = T("cache_hits"),
            ["files"] = new JsonArray(DistillationFiles.Cots, DistillationFiles.Evaluations, DistillationFiles.Failures, RawFolder + "/"),
            ["wall_seconds"] = wallSeconds,
        };
        AtomicFile.WriteAllText(Path.Combine(outDirectory, DistillationFiles.Manifest), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

/// <summary>
/// Writes a distillation job's shard results into the output folder: each finished shard's raw exchanges as
/// <c>raw/SHARD.jsonl</c> as soon as it appears, then <c>cots.jsonl</c>, <c>evaluations.jsonl</c> and <c>failures.jsonl</c>
/// from all shards in plan order. Every file is written whole under a temporary name and renamed, so a killed client
/// leaves only complete files, and a rerun rewrites them from the job's results: no record twice, none missing.
/// </summary>
internal sealed class DistillOutputWriter(EngineConnection connection, string jobId, string outDirectory)
{
    private static readonly JsonSerializerOptions Lines = new(TeacherCache.Json) { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly HashSet<string> _rawWritten = new(StringComparer.Ordinal);

    public sealed record Counts(long Cots, long Evaluations, long Failures);

    private string Prefix => $"jobs/{jobId}/shards/";

    public async Task WriteRawWhileRunningAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await WriteNewRawAsync(cancellationToken);
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The job ended (or the command was stopped): the final pass writes what is left.
        }
    }

    private async Task WriteNewRawAsync(CancellationToken cancellationToken)
    {
        await foreach (var key in connection.Store.ListAsync(Prefix, cancellationToken))
        {
            var shard = Path.GetFileNameWithoutExtension(key);
            if (_rawWritten.Contains(shard)) continue;
            if (await connection.Store.GetBytesAsync(key, cancellationToken) is not { } bytes) continue;
            WriteRaw(shard, DistillJob.ReadShard(bytes));
        }
    }

    private void WriteRaw(string shard, DistillationOutput output)
    {
        AtomicFile.WriteAllText(Path.Combine(outDirectory, DistillCommand.RawFolder, shard + ".jsonl"), JsonLines(output.Raw));
        _rawWritten.Add(shard);
    }

    public async Task<Counts> WriteAllAsync(CancellationToken cancellationToken)
    {
        var status = await connection.Grains.GetGrain<Contracts.IJobGrain>(jobId).GetStatusAsync(includeShards: true);
        long cotCount = 0, evaluationCount = 0, failureCount = 0;
        string Path(string file) => System.IO.Path.Combine(outDirectory, file);
        // Streamed shard by shard, so a large dataset never sits in memory whole; each file is renamed into place when complete.
        await AtomicFile.WriteAsync(Path(DistillationFiles.Cots), (cots, _) =>
            AtomicFile.WriteAsync(Path(DistillationFiles.Evaluations), (evaluations, _) =>
                AtomicFile.WriteAsync(Path(DistillationFiles.Failures), async (failures, _) =>
                {
                    foreach (var shard in status.ShardDetails.OrderBy(s => s.ShardId, StringComparer.Ordinal))
                    {
                        var bytes = await connection.Store.GetBytesAsync(ShardArtifacts.Key(jobId, shard.ShardId), cancellationToken)
                            ?? throw new InvalidOperationException($"Job {jobId} is done but the result of shard {shard.ShardId} is missing from the artifact store.");
                        var output = DistillJob.ReadShard(bytes);
                        if (!_rawWritten.Contains(shard.ShardId)) WriteRaw(shard.ShardId, output);
                        await WriteLinesAsync(cots, output.Cots, cancellationToken);
                        await WriteLinesAsync(evaluations, output.Evaluations, cancellationToken);
                        await WriteLinesAsync(failures, output.Failures, cancellationToken);
                        (cotCount, evaluationCount, failureCount) = (cotCount + output.Cots.Count, evaluationCount + output.Evaluations.Count, failureCount + output.Failures.Count);
                    }
                }, cancellationToken), cancellationToken), cancellationToken);
        return new Counts(cotCount, evaluationCount, failureCount);
    }

    private static async Task WriteLinesAsync<T>(Stream stream, IEnumerable<T> records, CancellationToken cancellationToken)
    {
        foreach (var record in records)
        {
            await JsonSerializer.SerializeAsync(stream, record, Lines, cancellationToken);
            stream.WriteByte((byte)'\n');
        }
    }

    private static string JsonLines<T>(IEnumerable<T> records)
    {
        var text = new StringBuilder();
        foreach (var record in records) text.Append(JsonSerializer.Serialize(record, Lines)).Append('\n');
        return text.ToString();
    }
}
