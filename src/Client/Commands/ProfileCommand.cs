using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Modeling.Analysis;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Experts;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary><c>babel profile</c> (expert activation counts per language, as a job) and <c>babel report</c> (heatmaps and report.html).</summary>
internal static class ProfileCommand
{
    public const string ManifestFileName = "manifest.json";
    /// <summary>Where <c>babel eval-pruning</c> and <c>babel sparse</c> write inside a run by default, so the report finds them.</summary>
    public const string PruningFolder = "pruning";
    public const string SparseFolder = "sparse";
    public const string DistillationFolder = "distillation";

    public static Command Create()
    {
        var defaults = new ProfileJobParameters("", "", [], "topk:4");
        var engine = new EngineOptions();
        var model = new Option<string>("--model") { Description = "Model folder with tokenizer.json and experts.json (see 'babel moefy').", Required = true };
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var experts = new Option<int?>("--experts") { Description = "Experts per layer; must match the model's experts.json." };
        var rule = new Option<string>("--rule") { Description = "Activation rule: topk:K or threshold:T.", DefaultValueFactory = _ => defaults.Rule };
        var split = new Option<string>("--split") { Description = "all, train or heldout.", DefaultValueFactory = _ => defaults.Split };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var maxTokens = new Option<long?>("--max-tokens-per-language") { Description = "Profile at most this many tokens of each language." };
        var shardTokens = new Option<int>("--shard-tokens") { Description = "Tokens per shard.", DefaultValueFactory = _ => defaults.ShardTokens };
        var sequenceLength = new Option<int>("--sequence-length") { Description = "Tokens per window fed to the model.", DefaultValueFactory = _ => defaults.SequenceLength };
        var countBos = new Option<bool>("--count-bos") { Description = "Count the BOS token that starts every document (not counted by default)." };
        var output = new Option<string>("--out") { Description = "Run folder: activations.json, manifest.json, heatmaps, report.html.", Required = true };
        var jobId = new Option<string?>("--job-id") { Description = "Job id; default: derived from the inputs, so rerunning resumes the same job." };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var command = new Command("profile", "Count, per language, layer and expert, how often each expert activates (a distributed job); writes activations.json, heatmaps and report.html.")
        {
            model, corpus, languages, experts, rule, split, maxTokens, shardTokens, sequenceLength, countBos, output, jobId, workers,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var modelDirectory = parse.GetValue(model)!;
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var codes = Modeling.Training.CorpusLanguages.Select(opened, parse.GetValue(languages));
            var config = ModelCheckpoint.Validate(modelDirectory);
            var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
            if (parse.GetValue(experts) is { } wanted && wanted != partition.Experts)
            {
                throw new UserInputException($"{modelDirectory}/{ExpertPartition.FileName} has {partition.Experts} experts per layer, not {wanted}; run 'babel moefy --model {modelDirectory} --experts {wanted}'.");
            }
            var activationRule = ActivationRule.Parse(parse.GetValue(rule)!);
            activationRule.CheckFits(partition);
            var runDirectory = parse.GetValue(output)!;

            await using var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken);
            var parameters = defaults with
            {
                Languages = codes,
                Rule = activationRule.ToString(),
                Split = parse.GetValue(split)!,
                MaxTokensPerLanguage = parse.GetValue(maxTokens),
                ShardTokens = parse.GetValue(shardTokens),
                SequenceLength = parse.GetValue(sequenceLength),
                CountBos = parse.GetValue(countBos),
            };
            var summary = await RunAsync(connection, modelDirectory, opened, partition, parameters, runDirectory, parse.GetValue(jobId), parse.InvocationConfiguration.Error, cancellationToken);
            parse.InvocationConfiguration.Output.WriteLine(summary);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Uploads the model and corpus, runs the profile job to the end, and writes activations.json, manifest.json, the
    /// heatmaps and report.html into <paramref name="runDirectory"/>; returns a one-line summary.
    /// </summary>
    public static async Task<string> RunAsync(EngineConnection connection, string modelDirectory, Corpus opened, ExpertPartition partition,
        ProfileJobParameters request, string runDirectory, string? jobId, TextWriter progress, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var parameters = request with
        {
            Model = await connection.Jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken),
            Corpus = await connection.Jobs.UploadFolderAsync(opened.Directory, "corpora", cancellationToken),
        };
        ProfileJob.ParseParameters(ProfileJob.Serialize(parameters));
        var codes = parameters.Languages;
        var spec = JobClient.Spec(ProfileJob.KindName, ProfileJob.Serialize(parameters));
        var id = jobId ?? JobClient.DefaultJobId(spec);
        var status = await JobProgress.RunAsync(connection, id, spec, progress, cancellationToken);
        var wall = stopwatch.Elapsed.TotalSeconds;

        var profile = ProfileJob.Profile(parameters.Model, parameters, partition.Layers, partition.Experts, status.Totals);
        Directory.CreateDirectory(runDirectory);
        profile.Save(runDirectory);
        var tokens = profile.Languages.Values.Sum(l => l.Tokens);
        var manifest = new JsonObject
        {
            ["job"] = id,
            ["model"] = parameters.Model,
            ["model_folder"] = Path.GetFullPath(modelDirectory),
            ["corpus"] = parameters.Corpus,
            ["corpus_name"] = opened.Manifest.Name,
            ["corpus_folder"] = Path.GetFullPath(opened.Directory),
            ["partition"] = new JsonObject { ["method"] = partition.Method, ["seed"] = partition.Seed, ["experts"] = partition.Experts },
            ["rule"] = profile.Rule,
            ["split"] = parameters.Split,
            ["count_bos"] = parameters.CountBos,
            ["shard_tokens"] = parameters.ShardTokens,
            ["sequence_length"] = parameters.SequenceLength,
            ["languages"] = new JsonArray([.. codes.Select(c => (JsonNode)c)]),
            ["tokens"] = tokens,
            ["shards"] = status.Shards,
            ["versions"] = new JsonObject
            {
                ["babel"] = typeof(ProfileCommand).Assembly.GetName().Version?.ToString(),
                ["torchsharp"] = typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(),
                ["dotnet"] = Environment.Version.ToString(),
            },
            ["wall_seconds"] = wall,
            ["tokens_per_second"] = tokens / wall,
        };
        AtomicFile.WriteAllText(Path.Combine(runDirectory, ManifestFileName), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var report = WriteReport(runDirectory, profile);
        return string.Create(CultureInfo.InvariantCulture, $"profiled {tokens:N0} tokens in {codes.Count} languages ({tokens / wall:N0} tokens/s): {Path.GetFullPath(Path.Combine(runDirectory, ActivationProfile.FileName))}, heatmaps and {report}");
    }

    public static Command Report()
    {
        var run = new Option<string>("--run") { Description = "Run folder written by 'babel profile'.", Required = true };
        var command = new Command("report", "Write the heatmaps and report.html of a profiling run.") { run };
        command.SetAction(parse =>
        {
            var directory = parse.GetValue(run)!;
            var path = WriteReport(directory, ActivationProfile.Load(directory));
            parse.InvocationConfiguration.Output.WriteLine($"wrote {path}");
            return 0;
        });
        return command;
    }

    public static string WriteReport(string runDirectory, ActivationProfile profile)
    {
        var manifestPath = Path.Combine(runDirectory, ManifestFileName);
        var fields = new List<KeyValuePair<string, string>>();
        if (File.Exists(manifestPath) && JsonNode.Parse(File.ReadAllText(manifestPath)) is JsonObject manifest)
        {
            foreach (var key in new[] { "model_folder", "corpus_name", "rule", "split", "tokens", "wall_seconds", "tokens_per_second" })
            {
                if (manifest[key] is { } value) fields.Add(KeyValuePair.Create(key, value.ToJsonString().Trim('"')));
            }
        }
        List<ReportSection> sections = [.. AnalysisSections.Read(runDirectory)];
        // The applications' results, when 'babel eval-pruning' and 'babel sparse' wrote them into the run's default folders.
        if (File.Exists(Path.Combine(runDirectory, PruningFolder, PruningCurves.FileName)))
        {
            sections.Add(PruningCurves.Load(Path.Combine(runDirectory, PruningFolder)).Section(PruningFolder));
        }
        if (File.Exists(Path.Combine(runDirectory, SparseFolder, SparseActivationCurves.FileName)))
        {
            sections.Add(SparseActivationCurves.Load(Path.Combine(runDirectory, SparseFolder)).Section(SparseFolder));
        }
        if (File.Exists(Path.Combine(runDirectory, DistillationFolder, StudentGridReport.JsonFile)))
        {
            sections.Add(StudentGridReport.Load(Path.Combine(runDirectory, DistillationFolder)).Section(DistillationFolder));
        }
        return Path.GetFullPath(ActivationReport.Write(runDirectory, profile, fields.ToDictionary(f => f.Key, f => f.Value), sections));
    }
}
