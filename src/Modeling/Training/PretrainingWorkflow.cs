using System.Globalization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;
using static TorchSharp.torch;

namespace Babel.Modeling.Training;

/// <summary>
/// <c>babel tokenizer train</c> and <c>babel pretrain</c> as library calls: a byte-level BPE tokenizer from a corpus's
/// train split, and a preset model pretrained on it into a Hugging Face model folder with <c>training.json</c>,
/// <c>history.jsonl</c> and <c>loss.png</c>, resumable from its checkpoint.
/// </summary>
public static class PretrainingWorkflow
{
    private static readonly string[] _tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

    /// <summary>A tokenizer of <paramref name="vocabSize"/> tokens trained on the train documents of <paramref name="languages"/>.</summary>
    public static ByteLevelBpeModel TrainTokenizer(Corpus corpus, IReadOnlyList<string> languages, int vocabSize, Action<string>? log = null)
    {
        if (vocabSize < ByteLevelBpeTrainer.MinimumVocabSize)
        {
            throw new UserInputException($"--vocab-size must be at least {ByteLevelBpeTrainer.MinimumVocabSize} (256 bytes and 3 special tokens); got {vocabSize}.");
        }
        var texts = languages.SelectMany(l => corpus.ReadDocuments(l, CorpusSplit.Train).Select(d => d.Text)).ToList();
        log?.Invoke($"training a byte-level BPE tokenizer ({vocabSize} tokens) on {texts.Count} documents in {languages.Count} languages");
        return ByteLevelBpeTrainer.Train(texts, vocabSize);
    }

    /// <summary>
    /// Pretrains the <paramref name="preset"/> model on <paramref name="corpusDirectory"/> into <paramref name="outputDirectory"/>
    /// (Hugging Face layout, <c>training.json</c> last), with the tokenizer of <paramref name="tokenizerDirectory"/> or one
    /// trained on the corpus; a rerun resumes from the checkpoint. Returns what <c>training.json</c> holds.
    /// </summary>
    public static PretrainingManifest Pretrain(string corpusDirectory, string outputDirectory, string preset, PretrainingOptions options, string? tokenizerDirectory,
        string? languageList, IProgress<TrainingProgress>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var corpus = Corpus.Open(corpusDirectory);
        var languages = CorpusLanguages.Select(corpus, languageList);
        Directory.CreateDirectory(outputDirectory);
        if (tokenizerDirectory is null && !File.Exists(Path.Combine(outputDirectory, "tokenizer.json")))
        {
            TrainTokenizer(corpus, languages, ModelPresets.VocabSize(preset), log).Save(outputDirectory);
        }
        using var tokenizer = HuggingFaceTokenizer.Load(tokenizerDirectory ?? outputDirectory);
        if (tokenizerDirectory is not null) CopyFiles(tokenizerDirectory, outputDirectory, _tokenizerFiles);
        var config = ModelPresets.Create(preset, tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId);
        var train = TokenStream.FromDocuments(tokenizer, languages.SelectMany(l => corpus.ReadDocuments(l, CorpusSplit.Train).Select(d => d.Text)));
        log?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"pretraining '{preset}' ({Describe(config)}) on {train.Length:N0} training tokens, {options.Steps} steps of {options.BatchSize}×{options.SequenceLength}, seed {options.Seed}"));

        TorchRuntime.Initialize(options.Threads);
        random.manual_seed(options.Seed);
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(options.Seed);
        var checkpoint = Path.Combine(outputDirectory, TrainingManifest.CheckpointFolderName);
        var losses = Pretrainer.Train(model, train, options, checkpoint, progress, cancellationToken, historyDirectory: outputDirectory);

        var heldout = languages.Select(l => Perplexity.Evaluate(model, tokenizer, l, corpus.ReadDocuments(l, CorpusSplit.Heldout).Select(d => d.Text))).ToList();
        ModelCheckpoint.Save(outputDirectory, config, model.StateDict());
        var manifest = new PretrainingManifest(preset, config, options.Seed, options,
            new PretrainingData(Path.GetFullPath(corpusDirectory), corpus.Manifest.Name, languages, train.Length, corpus.Manifest.Split.Heldout),
            losses.Count, TrainingManifest.FinalLoss(losses), heldout.ToDictionary(h => h.Language, HeldoutScore.Of, StringComparer.Ordinal));
        TrainingManifest.Save(outputDirectory, manifest);
        Directory.Delete(checkpoint, recursive: true);
        return manifest;
    }

    /// <summary>"d=128, 4 layers, 4 heads (2 KV), FFN 384, vocab 4096".</summary>
    public static string Describe(ModelConfig c) =>
        string.Create(CultureInfo.InvariantCulture, $"d={c.HiddenSize}, {c.NumHiddenLayers} layers, {c.NumAttentionHeads} heads ({c.NumKeyValueHeads} KV), FFN {c.IntermediateSize}, vocab {c.VocabSize}");

    /// <summary>Copies those of <paramref name="names"/> that exist in <paramref name="from"/> into <paramref name="to"/>, each atomically.</summary>
    internal static void CopyFiles(string from, string to, IEnumerable<string> names)
    {
        if (Path.GetFullPath(from) == Path.GetFullPath(to)) return;
        foreach (var name in names)
        {
            var source = Path.Combine(from, name);
            if (File.Exists(source)) AtomicFile.WriteAllBytes(Path.Combine(to, name), File.ReadAllBytes(source));
        }
    }
}
