using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Training;

/// <summary>Mean next-token negative log-likelihood of a set of documents, with what it implies.</summary>
public sealed record PerplexityResult(string Language, long Documents, long Tokens, long Bytes, double MeanNll)
{
    public double Perplexity => Math.Exp(MeanNll);
    /// <summary>Bits per UTF-8 byte: comparable across languages and tokenizers, unlike perplexity per token.</summary>
    public double BitsPerByte => Bytes == 0 ? double.NaN : MeanNll * Tokens / Math.Log(2) / Bytes;
}

/// <summary>The additive parts of a perplexity: they sum over disjoint sets of documents.</summary>
public readonly record struct PerplexitySum(double TotalNll, long Tokens, long Documents, long Bytes);

/// <summary>
/// Scores documents as [BOS] text [EOS]: every token after BOS is predicted from the tokens before it, within
/// windows of the model's context (a long document is cut into consecutive windows that overlap by one token).
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Evaluate(CausalLanguageModel model, ITokenizer tokenizer, string language, IEnumerable<string> documents, int windowLength = 256, int batchSize = 8)
    {
        var sum = Accumulate(model, tokenizer, documents, windowLength, batchSize);
        return new PerplexityResult(language, sum.Documents, sum.Tokens, sum.Bytes, sum.Tokens == 0 ? double.NaN : sum.TotalNll / sum.Tokens);
    }

    /// <summary>Summed NLL (nats), scored tokens, documents and UTF-8 bytes of <paramref name="documents"/>; the same documents in the same order always give the same sums.</summary>
    public static PerplexitySum Accumulate(CausalLanguageModel model, ITokenizer tokenizer, IEnumerable<string> documents, int windowLength = 256, int batchSize = 8,
        IFeedForwardHook? hook = null)
    {
        windowLength = Math.Min(windowLength, model.Config.MaxPositionEmbeddings);
        var windows = new List<long[]>();
        long documentCount = 0, bytes = 0;
        foreach (var text in documents)
        {
            documentCount++;
            bytes += System.Text.Encoding.UTF8.GetByteCount(text);
            long[] sequence = [tokenizer.BosId, .. tokenizer.Encode(text).Select(i => (long)i), tokenizer.EosId];
            for (var start = 0; start < sequence.Length - 1; start += windowLength)
            {
                windows.Add(sequence[start..Math.Min(sequence.Length, start + windowLength + 1)]);
            }
        }
        double totalNll = 0;
        long tokens = 0;
        using var guard = no_grad();
        foreach (var chunk in windows.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            var width = chunk.Max(w => w.Length) - 1;
            var inputs = new long[chunk.Length * width];
            var targets = new long[chunk.Length * width];
            Array.Fill(targets, -100L);
            for (var row = 0; row < chunk.Length; row++)
            {
                // Right padding: causal attention never lets a real token see the pads after it.
                Array.Copy(chunk[row], 0, inputs, row * width, chunk[row].Length - 1);
                Array.Copy(chunk[row], 1, targets, row * width, chunk[row].Length - 1);
                tokens += chunk[row].Length - 1;
            }
            var logits = model.Forward(tensor(inputs, [chunk.Length, width]), hook: hook);
            // Summed in float32 whatever the model computes in: a bfloat16 sum over thousands of tokens would lose the digits reported.
            var nll = F.cross_entropy(logits.view(-1, logits.shape[^1]).to(ScalarType.Float32), tensor(targets), ignore_index: -100, reduction: nn.Reduction.Sum);
            totalNll += nll.item<float>();
        }
        return new PerplexitySum(totalNll, tokens, documentCount, bytes);
    }
}
