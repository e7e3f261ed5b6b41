using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>The steps that <c>babel tokenizer train</c>, <c>babel pretrain</c>, <c>babel perplexity</c> and <c>babel quickstart</c> share.</summary>
internal static class ModelWorkflows
{
    public const string TrainingManifestName = "training.json";
    public const string CheckpointFolderName = "checkpoint";

    public static IReadOnlyList<string> SelectLanguages(Corpus corpus, string? languages)
    {
        if (string.IsNullOrWhiteSpace(languages)) return [.. corpus.Manifest.Languages.Select(l => l.Code)];
        var codes = languages.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal).ToList();
        foreach (var code in codes)
        {
            Corpus.RequireLanguageCode(code);
            if (corpus.Manifest.FindLanguage(code) is null)
            {
                throw new UserInputException($"unknown language '{code}'; this corpus has: {string.Join(", ", corpus.Manifest.Languages.Select(l => l.Code))}.");
            }
        }
        return codes;
    }

    public static ByteLevelBpeModel TrainTokenizer(Corpus corpus, IReadOnlyList<string> languages, int vocabSize, IAnsiConsole console)
    {
        var texts = languages.SelectMany(l => corpus.ReadDocuments(l, CorpusSplit.Train).Select(d => d.Text)).ToList();
        console.MarkupLineInterpolated($"training a byte-level BPE tokenizer ({vocabSize} tokens) on {texts.Count} documents in {languages.Count} languages");
        return ByteLevelBpeTrainer.Train(texts, vocabSize);
    }

    /// <summary>Pretrains a preset model on the corpus into <paramref name="outputDirectory"/> (Hugging Face layout + training.json), resuming from its checkpoint.</summary>
    public static void Pretrain(string corpusDirectory, string outputDirectory, string preset, PretrainingOptions options, string? tokenizerDirectory, string? languageList, IAnsiConsole console)
    {
        options.Validate();
        var corpus = Corpus.Open(corpusDirectory);
        var languages = SelectLanguages(corpus, languageList);
        Directory.CreateDirectory(outputDirectory);
        var tokenizerSource = tokenizerDirectory ?? outputDirectory;
        if (tokenizerDirectory is null && !File.Exists(Path.Combine(outputDirectory, "tokenizer.json")))
        {
            TrainTokenizer(corpus, languages, ModelPresets.VocabSize(preset), console).Save(outputDirectory);
        }
        using var tokenizer = HuggingFaceTokenizer.Load(tokenizerSource);
        if (tokenizerDirectory is not null) CopyTokenizerFiles(tokenizerDirectory, outputDirectory);
        var config = ModelPresets.Create(preset, tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId);
        var train = TokenStream.FromDocuments(tokenizer, languages.SelectMany(l => corpus.ReadDocuments(l, CorpusSplit.Train).Select(d => d.Text)));
        console.MarkupLineInterpolated($"pretraining '{preset}' ({Describe(config)}) on {train.Length:N0} training tokens, {options.Steps} steps of {options.BatchSize}×{options.SequenceLength}, seed {options.Seed}");

        Modeling.Runtime.TorchRuntime.Initialize(options.Threads);
        TorchSharp.torch.random.manual_seed(options.Seed);
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(options.Seed);
        IReadOnlyList<double> losses = [];
        var checkpoint = Path.Combine(outputDirectory, CheckpointFolderName);
        console.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("pretraining", maxValue: options.Steps);
                var progress = new InlineProgress<TrainingProgress>(p =>
                {
                    task.Value = p.Step;
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.Steps} loss {p.Loss:F3} lr {p.LearningRate:E1} {p.TokensPerSecond:N0} tok/s{(p.Resumed ? " (resumed)" : "")}");
                });
                losses = Pretrainer.Train(model, train, options, checkpoint, progress);
            });

        var heldout = languages.Select(l => Perplexity.Evaluate(model, tokenizer, l, corpus.ReadDocuments(l, CorpusSplit.Heldout).Select(d => d.Text))).ToList();
        ModelCheckpoint.Save(outputDirectory, config, model.StateDict());
        var finalLoss = losses.Skip(Math.Max(0, losses.Count - 20)).DefaultIfEmpty(double.NaN).Average();
        var manifest = new JsonObject
        {
            ["preset"] = preset,
            ["config"] = config.ToJson(),
            ["seed"] = options.Seed,
            ["options"] = JsonSerializer.SerializeToNode(options),
            ["data"] = new JsonObject
            {
                ["corpus"] = Path.GetFullPath(corpusDirectory),
                ["corpusName"] = corpus.Manifest.Name,
                ["languages"] = new JsonArray([.. languages.Select(l => (JsonNode)l)]),
                ["trainTokens"] = train.Length,
                ["heldoutIds"] = new JsonArray([.. corpus.Manifest.Split.Heldout.Select(id => (JsonNode)id)]),
            },
            ["steps"] = losses.Count,
            ["finalTrainLoss"] = finalLoss,
            ["heldout"] = new JsonObject(heldout.Select(h => KeyValuePair.Create(h.Language, (JsonNode?)new JsonObject
            {
                ["tokens"] = h.Tokens,
                ["meanNll"] = h.MeanNll,
                ["perplexity"] = h.Perplexity,
                ["bitsPerByte"] = h.BitsPerByte,
            }))),
        };
        // training.json goes last: its presence marks a finished model folder.
        AtomicFile.WriteAllText(Path.Combine(outputDirectory, TrainingManifestName), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Directory.Delete(checkpoint, recursive: true);
        console.MarkupLineInterpolated($"final train loss {finalLoss:F3}; held-out mean NLL {heldout.Average(h => h.MeanNll):F3}; model written to {Path.GetFullPath(outputDirectory)}");
    }

    public static string Describe(ModelConfig c) =>
        string.Create(CultureInfo.InvariantCulture, $"d={c.HiddenSize}, {c.NumHiddenLayers} layers, {c.NumAttentionHeads} heads ({c.NumKeyValueHeads} KV), FFN {c.IntermediateSize}, vocab {c.VocabSize}");

    private static void CopyTokenizerFiles(string from, string to)
    {
        if (Path.GetFullPath(from) == Path.GetFullPath(to)) return;
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
        {
            var source = Path.Combine(from, name);
            if (File.Exists(source)) AtomicFile.WriteAllBytes(Path.Combine(to, name), File.ReadAllBytes(source));
        }
    }

    /// <summary>Reports synchronously on the training thread (Progress&lt;T&gt; would post to the thread pool and lag behind).</summary>
    private sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
