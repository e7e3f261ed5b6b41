using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel prune</c> (which experts to switch off for a language, optionally exported as a smaller checkpoint) and
/// <c>babel eval-pruning</c> (held-out perplexity of every strategy and rate, as a job on the engine).
/// </summary>
internal static class PruneCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder the run profiled (config.json, safetensors, tokenizer.json, experts.json).", Required = true };
        var run = new Option<string>("--run") { Description = "Profiling run folder (activations.json) of this model.", Required = true };
        var language = new Option<string>("--language") { Description = "Language whose least active experts are pruned, or 'all' (every language of the run pooled).", Required = true };
        var rate = new Option<double>("--rate") { Description = "Fraction of experts to prune in (0, 1); round(rate × experts) per layer.", Required = true };
        var strategy = new Option<string>("--strategy") { Description = "frequency, random or layerwise.", DefaultValueFactory = _ => ExpertPruning.Frequency };
        strategy.AcceptOnlyFromAmong([.. ExpertPruning.Strategies]);
        var seed = new Option<long>("--seed") { Description = "Seed of the random strategy.", DefaultValueFactory = _ => 0 };
        var export = new Option<bool>("--export") { Description = "Also write the physically smaller checkpoint (pruned neurons removed, per-layer widths in config.json)." };
        var output = new Option<string>("--out") { Description = "Folder for pruning.json (and, with --export, the pruned model).", Required = true };
        var command = new Command("prune", "Choose the experts to prune for a language from a profiling run (pruning.json); --export writes a smaller checkpoint.")
        {
            model, run, language, rate, strategy, seed, export, output,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var modelDirectory = parse.GetValue(model)!;
            var (profile, partition) = await OpenAsync(modelDirectory, parse.GetValue(run)!, modelKey: null, cancellationToken);
            var plan = ExpertPruning.Plan(profile, parse.GetValue(language)!, parse.GetValue(rate), parse.GetValue(strategy)!, parse.GetValue(seed));
            var outDirectory = parse.GetValue(output)!;
            if (parse.GetValue(export))
            {
                TorchRuntime.Initialize();
                using var checkpoint = ModelCheckpoint.Load(modelDirectory);
                var (config, tensors) = ExpertPruning.Export(checkpoint.Config, checkpoint.Tensors, partition, plan);
                // The whole folder appears at once: a reader never sees weights without their pruning.json.
                AtomicFile.WriteDirectory(outDirectory, temporary =>
                {
                    ModelCheckpoint.Save(temporary, config, tensors);
                    foreach (var file in new[] { "tokenizer.json" }.Where(f => File.Exists(Path.Combine(modelDirectory, f))))
                    {
                        File.Copy(Path.Combine(modelDirectory, file), Path.Combine(temporary, file));
                    }
                    plan.Save(temporary);
                });
                var before = checkpoint.Config.IntermediateSize * (long)checkpoint.Config.NumHiddenLayers;
                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"pruned {plan.PrunedCount} of {plan.Layers * plan.Experts} experts ({plan.Strategy}, {plan.Language}); FFN neurons {before:N0} → {config.IntermediateSizes!.Sum():N0}: {Path.GetFullPath(outDirectory)}"));
            }
            else
            {
                Directory.CreateDirectory(outDirectory);
                plan.Save(outDirectory);
                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"pruned {plan.PrunedCount} of {plan.Layers * plan.Experts} experts ({plan.Strategy}, {plan.Language}): {Path.GetFullPath(Path.Combine(outDirectory, ExpertPruningPlan.FileName))}"));
            }
            return 0;
        });
        return command;
    }

    public static Command Evaluate()
    {
        var model = new Option<string>("--model") { Description = "Model folder the run profiled.", Required = true };
        var run = new Option<string>("--run") { Description = "Profiling run folder (activations.json) of this model.", Required = true };
        var corpus = new Option<string?>("--corpus") { Description = "Corpus folder to evaluate on (default: the one the run profiled)." };
        var rates = new Option<string>("--rates") { Description = "Comma-separated pruning rates in (0, 1).", DefaultValueFactory = _ => "0.1,0.2,0.3,0.4,0.5" };
        var strategies = new Option<string>("--strategies") { Description = "Comma-separated: frequency, random, layerwise.", DefaultValueFactory = _ => string.Join(",", ExpertPruning.Strategies) };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the run)." };
        var seeds = new Option<int>("--seeds") { Description = "Seeds the random strategy is averaged over.", DefaultValueFactory = _ => 3 };
        var split = new Option<string>("--split") { Description = "Split to score: heldout (default), train or all.", DefaultValueFactory = _ => "heldout" };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var output = new Option<string?>("--out") { Description = "Output folder (default: RUN/pruning, which the run's report.html shows)." };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var engine = new EngineOptions();
        var command = new Command("eval-pruning", "Held-out perplexity per language of frequency-guided, random and layer-wise expert pruning at several rates (a distributed job); writes a table and plots.")
        {
            model, run, corpus, rates, strategies, languages, seeds, split, output, workers,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var runDirectory = parse.GetValue(run)!;
            var request = new PruningRequest(
                ParseRates(parse.GetValue(rates)!),
                [.. Split(parse.GetValue(strategies)!).Select(ExpertPruning.RequireStrategy)],
                parse.GetValue(languages) is { } list ? Split(list) : null,
                parse.GetValue(seeds),
                parse.GetValue(split)!);
            var corpusDirectory = parse.GetValue(corpus) ?? ProfiledCorpus(runDirectory);
            await using var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken);
            var curves = await RunAsync(connection, parse.GetValue(model)!, runDirectory, corpusDirectory, request,
                parse.GetValue(output) ?? Path.Combine(runDirectory, ProfileCommand.PruningFolder), parse.InvocationConfiguration.Error, cancellationToken);
            parse.InvocationConfiguration.Output.WriteLine(curves.Reading());
            parse.InvocationConfiguration.Output.WriteLine($"report: {ProfileCommand.WriteReport(runDirectory, ActivationProfile.Load(runDirectory))}");
            return 0;
        });
        return command;
    }

    /// <summary>What to evaluate: rates, strategies, languages (null: the run's), random seeds and the split scored.</summary>
    public sealed record PruningRequest(IReadOnlyList<double> Rates, IReadOnlyList<string> Strategies, IReadOnlyList<string>? Languages, int Seeds, string Split);

    /// <summary>Runs the evaluation job and writes the curves, table and plots into <paramref name="outDirectory"/>.</summary>
    public static async Task<PruningCurves> RunAsync(EngineConnection connection, string modelDirectory, string runDirectory, string corpusDirectory,
        PruningRequest request, string outDirectory, TextWriter progress, CancellationToken cancellationToken)
    {
        if (request.Seeds < 1) throw new UserInputException("--seeds must be at least 1.");
        if (request.Strategies.Count == 0) throw new UserInputException("--strategies names no strategy.");
        // The upload hashes the model folder; its key is what the run must have profiled, so the folder is read once.
        var modelKey = await connection.Jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken);
        var (profile, partition) = await OpenAsync(modelDirectory, runDirectory, modelKey, cancellationToken);
        var opened = Corpus.Open(corpusDirectory);
        var codes = request.Languages ?? [.. profile.Languages.Keys];
        foreach (var code in codes)
        {
            if (!profile.Languages.ContainsKey(code)) throw new UserInputException($"Language '{code}' is not in the run; it profiled {string.Join(", ", profile.Languages.Keys)}.");
            if (opened.Manifest.Languages.All(l => l.Code != code)) throw new UserInputException($"Language '{code}' is not in the corpus {corpusDirectory}.");
        }
        foreach (var rate in request.Rates) ExpertPruning.ExpertsPerLayer(rate, partition.Experts);
        if (request.Split != "train" && ProfiledSplit(runDirectory) == "all")
        {
            progress.WriteLine($"warning: the run profiled the 'all' split, which includes the {request.Split} documents scored here; profile --split train for a clean evaluation.");
        }

        var variants = new List<PruningVariant>();
        var unprunedMask = PruningEvaluationJob.Encode([.. Enumerable.Range(0, partition.Layers).Select(_ => new bool[partition.Experts])]);
        foreach (var code in codes)
        {
            variants.Add(new PruningVariant(VariantName(code, PruningEvaluationJob.Unpruned, 0, 0), code, unprunedMask));
            foreach (var strategy in request.Strategies)
            {
                foreach (var rate in request.Rates)
                {
                    foreach (var seed in SeedsOf(strategy, request.Seeds))
                    {
                        var plan = ExpertPruning.Plan(profile, code, rate, strategy, seed);
                        variants.Add(new PruningVariant(VariantName(code, strategy, rate, seed), code, PruningEvaluationJob.Encode(plan.Pruned)));
                    }
                }
            }
        }
        var parameters = new PruningEvaluationParameters(
            modelKey,
            await connection.Jobs.UploadFolderAsync(opened.Directory, "corpora", cancellationToken),
            variants, request.Split);
        PruningEvaluationJob.ParseParameters(PruningEvaluationJob.Serialize(parameters));
        var spec = JobClient.Spec(PruningEvaluationJob.KindName, PruningEvaluationJob.Serialize(parameters));
        var status = await JobProgress.RunAsync(connection, JobClient.DefaultJobId(spec), spec, progress, cancellationToken);

        double PerplexityOf(string name) => Math.Exp(PruningEvaluationJob.MeanNll(status.Totals, name));
        var curves = new PruningCurves(profile.Model, request.Split, request.Rates, request.Strategies, [.. codes.Select(code => new LanguagePruningCurves(
            code,
            PerplexityOf(VariantName(code, PruningEvaluationJob.Unpruned, 0, 0)),
            [.. request.Strategies.SelectMany(strategy => request.Rates.Select(rate =>
            {
                var values = SeedsOf(strategy, request.Seeds).Select(seed => PerplexityOf(VariantName(code, strategy, rate, seed))).ToList();
                var mean = values.Average();
                var std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
                return new PruningPoint(strategy, rate, mean, std, values);
            }))]))]);
        AtomicFile.WriteDirectory(outDirectory, temporary => curves.Save(temporary));
        progress.WriteLine($"wrote {Path.GetFullPath(Path.Combine(outDirectory, PruningCurves.FileName))}, {PruningCurves.TableFileName} and plots");
        return curves;
    }

    private static IEnumerable<long> SeedsOf(string strategy, int seeds) => strategy == ExpertPruning.Random ? Enumerable.Range(0, seeds).Select(s => (long)s) : [0L];

    private static string VariantName(string language, string strategy, double rate, long seed) =>
        string.Create(CultureInfo.InvariantCulture, $"{language}/{strategy}/{rate:R}/{seed}");

    /// <summary>
    /// The run's profile and the model's partition, after checking that the run profiled this very model;
    /// <paramref name="modelKey"/> is the folder's artifact key when it was already uploaded (else it is hashed here).
    /// </summary>
    private static async Task<(ActivationProfile Profile, ExpertPartition Partition)> OpenAsync(string modelDirectory, string runDirectory, string? modelKey,
        CancellationToken cancellationToken)
    {
        var profile = ActivationProfile.Load(runDirectory);
        var config = ModelCheckpoint.Validate(modelDirectory);
        var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
        var key = modelKey ?? "models/" + await ArtifactFolders.ComputeContentHashAsync(modelDirectory, cancellationToken);
        if (profile.Model != key || profile.Layers != partition.Layers || profile.Experts != partition.Experts)
        {
            throw new UserInputException($"{runDirectory} profiled another model ({profile.Model}, {profile.Layers} layers × {profile.Experts} experts), not {modelDirectory} ({key}); profile this model with 'babel profile' first.");
        }
        return (profile, partition);
    }

    private static JsonObject? ProfileManifest(string runDirectory)
    {
        var path = Path.Combine(runDirectory, ProfileCommand.ManifestFileName);
        return File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject : null;
    }

    private static string ProfiledCorpus(string runDirectory) =>
        ProfileManifest(runDirectory)?["corpus_folder"]?.GetValue<string>() is { } folder && Directory.Exists(folder)
            ? folder
            : throw new UserInputException($"{runDirectory}/{ProfileCommand.ManifestFileName} does not name a corpus folder that exists here; pass --corpus.");

    private static string? ProfiledSplit(string runDirectory) => ProfileManifest(runDirectory)?["split"]?.GetValue<string>();

    private static List<string> Split(string list) => [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    private static List<double> ParseRates(string list)
    {
        var rates = new List<double>();
        foreach (var item in Split(list))
        {
            if (!double.TryParse(item, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate))
            {
                throw new UserInputException($"'{item}' in --rates is not a number; give fractions such as 0.1,0.2.");
            }
            if (!(rate > 0 && rate < 1)) throw new UserInputException($"The pruning rate {item} is outside (0, 1); give the fraction of experts to prune, e.g. 0.2.");
            rates.Add(rate);
        }
        if (rates.Count == 0) throw new UserInputException("--rates names no rate.");
        return [.. rates.Distinct().Order()];
    }
}
