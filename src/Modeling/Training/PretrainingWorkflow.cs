using System.Globalization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;

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
        PrepareTokenizer(corpusDirectory, outputDirectory, preset, tokenizerDirectory, languageList, log);
        using var run = PretrainingRun.Open(corpusDirectory, outputDirectory, preset, languageList);
        log?.Invoke(run.Describe(options));

        TorchRuntime.Initialize(options.Threads);
        using var model = run.NewModel(options.Seed);
        var checkpoint = Path.Combine(outputDirectory, TrainingManifest.CheckpointFolderName);
        var losses = Pretrainer.Train(model, run.Train, options, checkpoint, progress, cancellationToken, historyDirectory: outputDirectory);
        return Finish(run, model, options, losses, outputDirectory);
    }

    /// <summary>
    /// Puts the tokenizer files into <paramref name="outputDirectory"/>: copied from <paramref name="tokenizerDirectory"/>, or
    /// a tokenizer of the preset's vocabulary trained on the corpus (unless the folder already holds one, as a resumed run's does).
    /// </summary>
    public static void PrepareTokenizer(string corpusDirectory, string outputDirectory, string preset, string? tokenizerDirectory, string? languageList, Action<string>? log = null)
    {
        Directory.CreateDirectory(outputDirectory);
        if (tokenizerDirectory is not null)
        {
            using (HuggingFaceTokenizer.Load(tokenizerDirectory)) CopyFiles(tokenizerDirectory, outputDirectory, _tokenizerFiles);
            return;
        }
        if (File.Exists(Path.Combine(outputDirectory, "tokenizer.json"))) return;
        var corpus = Corpus.Open(corpusDirectory);
        TrainTokenizer(corpus, CorpusLanguages.Select(corpus, languageList), ModelPresets.VocabSize(preset), log).Save(outputDirectory);
    }

    /// <summary>Copies the tokenizer files of <paramref name="from"/> into <paramref name="to"/>.</summary>
    public static void CopyTokenizer(string from, string to) => CopyFiles(from, to, _tokenizerFiles);

    /// <summary>
    /// Completes a trained model folder: held-out scores per language, the weights in Hugging Face layout, <c>training.json</c>
    /// last, and the resumable checkpoint removed. Returns what <c>training.json</c> holds.
    /// </summary>
    public static PretrainingManifest Finish(PretrainingRun run, CausalLanguageModel model, PretrainingOptions options, IReadOnlyList<double> losses, string outputDirectory)
    {
        var heldout = run.Languages.Select(l => Perplexity.Evaluate(model, run.Tokenizer, l, run.Corpus.ReadDocuments(l, CorpusSplit.Heldout).Select(d => d.Text))).ToList();
        ModelCheckpoint.Save(outputDirectory, run.Config, model.StateDict());
        var manifest = new PretrainingManifest(run.Preset, run.Config, options.Seed, options,
            new PretrainingData(Path.GetFullPath(run.CorpusDirectory), run.Corpus.Manifest.Name, run.Languages, run.Train.Length, run.Corpus.Manifest.Split.Heldout),
            losses.Count, TrainingManifest.FinalLoss(losses), heldout.ToDictionary(h => h.Language, HeldoutScore.Of, StringComparer.Ordinal));
        TrainingManifest.Save(outputDirectory, manifest);
        var checkpoint = Path.Combine(outputDirectory, TrainingManifest.CheckpointFolderName);
        if (Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
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
