using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>The counting pass of a profile: one slice of a language's token stream through the model with an <see cref="ActivationCounter"/> attached.</summary>
public static class ActivationProfiler
{
    /// <summary>
    /// Counts, per layer and expert, the tokens of <paramref name="tokens"/> that activate each expert under
    /// <paramref name="rule"/>. The tokens are cut into windows of <paramref name="sequenceLength"/> and run in batches of
    /// <paramref name="batchSize"/> windows, right-padded (causal attention keeps pads out of every real token's
    /// computation, and pads are never counted); <paramref name="bosId"/> tokens are counted only when
    /// <paramref name="countBos"/>. The same windows give the same counts however the stream was sliced into calls.
    /// </summary>
    public static LanguageActivations Count(CausalLanguageModel model, ExpertPartition partition, ActivationRule rule, IReadOnlyList<long> tokens, long bosId,
        int sequenceLength, int batchSize, bool countBos, CancellationToken cancellationToken = default)
    {
        using var counter = new ActivationCounter(partition, rule, CPU);
        var pad = model.Config.PadTokenId ?? 0;
        using (no_grad())
        {
            var windows = tokens.Chunk(sequenceLength).ToList();
            foreach (var batch in windows.Chunk(batchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var width = batch.Max(w => w.Length);
                var ids = new long[batch.Length * width];
                var counted = new bool[batch.Length * width];
                Array.Fill(ids, pad);
                for (var row = 0; row < batch.Length; row++)
                {
                    Array.Copy(batch[row], 0, ids, row * width, batch[row].Length);
                    for (var i = 0; i < batch[row].Length; i++) counted[row * width + i] = countBos || batch[row][i] != bosId;
                }
                counter.SetTokenMask(tensor(counted, [batch.Length, width]));
                model.Forward(tensor(ids, [batch.Length, width]), hook: counter);
            }
        }
        return new LanguageActivations(counter.Tokens, counter.Counts());
    }
}
