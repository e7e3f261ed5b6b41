using System.Globalization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;
using static TorchSharp.torch;

namespace Babel.Modeling.Training;

/// <summary>
/// What a pretraining run trains on, read once: the corpus and its languages, the tokenizer, the preset's configuration
/// and the training split as one token stream. Every rank of a data-parallel run opens the same one.
/// </summary>
public sealed class PretrainingRun : IDisposable
{
    private PretrainingRun(string corpusDirectory, Corpus corpus, IReadOnlyList<string> languages, HuggingFaceTokenizer tokenizer, string preset, ModelConfig config, TokenStream train)
    {
        CorpusDirectory = corpusDirectory;
        Corpus = corpus;
        Languages = languages;
        Tokenizer = tokenizer;
        Preset = preset;
        Config = config;
        Train = train;
    }

    public string CorpusDirectory { get; }
    public Corpus Corpus { get; }
    public IReadOnlyList<string> Languages { get; }
    public HuggingFaceTokenizer Tokenizer { get; }
    public string Preset { get; }
    public ModelConfig Config { get; }
    public TokenStream Train { get; }

    /// <summary>Opens the corpus, the tokenizer of <paramref name="tokenizerDirectory"/> and tokenises the training split of the languages.</summary>
    public static PretrainingRun Open(string corpusDirectory, string tokenizerDirectory, string preset, string? languageList)
    {
        var corpus = Corpus.Open(corpusDirectory);
        var languages = CorpusLanguages.Select(corpus, languageList);
        var tokenizer = HuggingFaceTokenizer.Load(tokenizerDirectory);
        var config = ModelPresets.Create(preset, tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId);
        var train = TokenStream.FromDocuments(tokenizer, languages.SelectMany(l => corpus.ReadDocuments(l, CorpusSplit.Train).Select(d => d.Text)));
        return new PretrainingRun(corpusDirectory, corpus, languages, tokenizer, preset, config, train);
    }

    /// <summary>The preset's model with the run's initial weights for <paramref name="seed"/>: the same on every rank.</summary>
    public CausalLanguageModel NewModel(long seed)
    {
        random.manual_seed(seed);
        var model = new CausalLanguageModel(Config);
        model.InitializeWeights(seed);
        return model;
    }

    /// <summary>"pretraining 'tiny' (d=128, …) on 12,345 training tokens, 600 steps of 16×128, seed 1".</summary>
    public string Describe(PretrainingOptions options) => string.Create(CultureInfo.InvariantCulture,
        $"pretraining '{Preset}' ({PretrainingWorkflow.Describe(Config)}) on {Train.Length:N0} training tokens, {options.Steps} steps of {options.BatchSize}×{options.SequenceLength}, seed {options.Seed}");

    public void Dispose() => Tokenizer.Dispose();
}
