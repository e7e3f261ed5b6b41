using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Generation;

/// <summary>
/// Generates continuations for a batch of prompts of different lengths (left-padded), with a key/value cache
/// (prefill, then one <see cref="CachedDecoder"/> step per token) or, for comparison, by recomputing the whole
/// sequence every step.
/// </summary>
public static class TextGenerator
{
    /// <summary>How often (in steps) the host checks whether every row has ended; each check is a device sync.</summary>
    private const int EosCheckInterval = 8;

    /// <summary>
    /// The generated ids of each prompt (without the prompt), ending at the first EOS (any of <see cref="SamplingOptions.EosTokenIds"/>)
    /// when <see cref="SamplingOptions.StopAtEos"/>.
    /// <c>onStep</c>, when given, gets the token every row chose at each step (rows that ended included); it costs a device
    /// sync per step, so only a caller that needs the tokens as they come (a server) passes it. <c>cancellationToken</c> is checked between steps, so a
    /// server stops within one step of its client leaving (<see cref="OperationCanceledException"/>).
    /// </summary>
    public static int[][] Generate(CausalLanguageModel model, IReadOnlyList<int[]> prompts, SamplingOptions options, bool useCache = true, int padId = 0,
        IFeedForwardHook? hook = null, Action<long[]>? onStep = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (prompts.Count == 0) return [];
        var config = model.Config;
        var longest = prompts.Max(p => p.Length);
        if (prompts.Any(p => p.Length == 0)) throw new UserInputException("A prompt is empty; start it with the BOS token.");
        if (longest + options.MaxNewTokens > config.MaxPositionEmbeddings)
        {
            throw new UserInputException($"The prompt ({longest} tokens) plus --max-new-tokens ({options.MaxNewTokens}) exceeds the model's max_position_embeddings ({config.MaxPositionEmbeddings}).");
        }
        if (prompts.SelectMany(p => p).Any(id => id < 0 || id >= config.VocabSize))
        {
            throw new UserInputException($"A prompt token id is outside the model's vocabulary of {config.VocabSize}.");
        }
        if (options.MaxNewTokens == 0) return [.. prompts.Select(_ => Array.Empty<int>())];

        cancellationToken.ThrowIfCancellationRequested();
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        var batch = prompts.Count;
        int[] eos = options.StopAtEos ? [.. (options.EosTokenIds ?? [config.EosTokenId]).Distinct()] : [];
        var (ids, mask) = LeftPad(prompts, padId);
        var generated = zeros([batch, options.MaxNewTokens], ScalarType.Int64);
        var finished = zeros(batch, ScalarType.Bool);
        using var sampler = new TokenSampler(options);
        var steps = 0;
        if (useCache)
        {
            using var cache = new KeyValueCache(config.NumHiddenLayers, batch, config.NumKeyValueHeads, config.HeadDim, longest + options.MaxNewTokens, dtype: model.Dtype);
            using var decoder = new CachedDecoder(model);
            var next = sampler.Next(model.Forward(ids, mask, cache, hook).select(1, -1));
            while (true)
            {
                generated.select(1, steps).copy_(next);
                steps++;
                onStep?.Invoke(next.data<long>().ToArray());
                cancellationToken.ThrowIfCancellationRequested();
                if (steps == options.MaxNewTokens || ShouldStop(eos, next, finished, steps)) break;
                using var stepScope = NewDisposeScope();
                next = sampler.Next(decoder.Step(next, cache, hook)).MoveToOuterDisposeScope();
            }
        }
        else
        {
            var sequence = ids;
            var sequenceMask = mask;
            while (true)
            {
                using var stepScope = NewDisposeScope();
                var next = sampler.Next(model.Forward(sequence, sequenceMask, hook: hook).select(1, -1));
                generated.select(1, steps).copy_(next);
                steps++;
                onStep?.Invoke(next.data<long>().ToArray());
                cancellationToken.ThrowIfCancellationRequested();
                if (steps == options.MaxNewTokens || ShouldStop(eos, next, finished, steps)) break;
                sequence = cat([sequence, next.unsqueeze(1)], dim: 1).MoveToOuterDisposeScope();
                sequenceMask = cat([sequenceMask, ones([batch, 1], ScalarType.Int64)], dim: 1).MoveToOuterDisposeScope();
            }
        }
        return Trim(generated.narrow(1, 0, steps), eos);
    }

    private static bool ShouldStop(int[] eos, Tensor next, Tensor finished, int steps)
    {
        if (eos.Length == 0) return false;
        foreach (var id in eos)
        {
            using var ended = next.eq(id);
            finished.logical_or_(ended);
        }
        return steps % EosCheckInterval == 0 && finished.all().item<bool>();
    }

    /// <summary>Left-pads prompts into ids [batch, longest] and an attention mask (1 = token).</summary>
    public static (Tensor Ids, Tensor Mask) LeftPad(IReadOnlyList<int[]> prompts, int padId)
    {
        var longest = prompts.Max(p => p.Length);
        var ids = new long[prompts.Count * longest];
        var mask = new long[prompts.Count * longest];
        for (var row = 0; row < prompts.Count; row++)
        {
            var padding = longest - prompts[row].Length;
            var offset = row * longest + padding;
            Array.Fill(ids, padId, row * longest, padding);
            for (var i = 0; i < prompts[row].Length; i++)
            {
                ids[offset + i] = prompts[row][i];
                mask[offset + i] = 1;
            }
        }
        return (tensor(ids, [prompts.Count, longest]), tensor(mask, [prompts.Count, longest]));
    }

    private static int[][] Trim(Tensor generated, int[] eos)
    {
        var rows = (int)generated.shape[0];
        var width = (int)generated.shape[1];
        var flat = generated.data<long>().ToArray();
        var result = new int[rows][];
        for (var row = 0; row < rows; row++)
        {
            var tokens = new List<int>(width);
            for (var i = 0; i < width; i++)
            {
                var token = (int)flat[row * width + i];
                tokens.Add(token);
                if (Array.IndexOf(eos, token) >= 0) break;
            }
            result[row] = [.. tokens];
        }
        return result;
    }
}
