using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;

namespace Babel.Modeling.Training;

/// <summary>One language's held-out perplexity under the trained model and under the same architecture untrained.</summary>
public sealed record HeldoutLanguage(string Language, string Family, PerplexityResult Trained, PerplexityResult Untrained)
{
    /// <summary>Training clearly helped: the trained perplexity is below half the untrained one.</summary>
    public bool Learned => Trained.Perplexity < Untrained.Perplexity / 2;
}

/// <summary>
/// Did pretraining learn every language? Each language's held-out documents are scored by the trained model and by an
/// untrained one of the same configuration (initialised with the given seed): the quickstart's check.
/// </summary>
public static class HeldoutComparison
{
    public static IReadOnlyList<HeldoutLanguage> Evaluate(CausalLanguageModel model, ITokenizer tokenizer, Corpus corpus, long untrainedSeed)
    {
        using var untrained = new CausalLanguageModel(model.Config);
        untrained.InitializeWeights(untrainedSeed);
        untrained.eval();
        return
        [
            .. corpus.Manifest.Languages.Select(language =>
            {
                var texts = corpus.ReadDocuments(language.Code, CorpusSplit.Heldout).Select(d => d.Text).ToList();
                return new HeldoutLanguage(language.Code, language.Family,
                    Perplexity.Evaluate(model, tokenizer, language.Code, texts), Perplexity.Evaluate(untrained, tokenizer, language.Code, texts));
            }),
        ];
    }
}
