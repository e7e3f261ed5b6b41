using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

public class PerplexityTests
{
    /// <summary>Maps each character to one token id, so expected sequences are obvious.</summary>
    private sealed class CharacterTokenizer : ITokenizer
    {
        public int VocabSize => 61;
        public int BosId => 1;
        public int EosId => 2;
        public int PadId => 0;
        public int[] Encode(string text) => [.. text.Select(c => 3 + (c - 'a') % 58)];
        public string Decode(ReadOnlySpan<int> ids) => throw new NotSupportedException();
    }

    [Theory]
    [InlineData(256, 2)]
    [InlineData(256, 1)]
    public void Mean_nll_equals_a_position_by_position_computation(int window, int batch)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var tokenizer = new CharacterTokenizer();
        string[] documents = ["abcdefg", "hello", "thequickbrownfoxjumps"];
        var result = Perplexity.Evaluate(model, tokenizer, "xxx", documents, window, batch);

        // Independent: each target token scored from the full-prefix forward of its own document, one document at a time.
        double total = 0;
        var count = 0;
        using (no_grad())
        {
            foreach (var text in documents)
            {
                long[] sequence = [1, .. tokenizer.Encode(text).Select(i => (long)i), 2];
                using var logits = model.Forward(tensor(sequence).unsqueeze(0));
                using var logProbabilities = logits.log_softmax(-1);
                for (var t = 0; t + 1 < sequence.Length; t++)
                {
                    total -= logProbabilities[0, t, sequence[t + 1]].item<float>();
                    count++;
                }
            }
        }
        Assert.Equal(count, result.Tokens);
        Assert.Equal(3, result.Documents);
        Assert.Equal(total / count, result.MeanNll, 4);
        Assert.Equal(Math.Exp(total / count), result.Perplexity, 3);
    }

    [Fact]
    public void Windows_shorter_than_a_document_score_every_token_once()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var result = Perplexity.Evaluate(model, new CharacterTokenizer(), "xxx", ["abcdefghijklmnopqrstuvwxyz"], windowLength: 8);
        Assert.Equal(27, result.Tokens);
        Assert.True(double.IsFinite(result.MeanNll));
    }
}
