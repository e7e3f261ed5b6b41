using System.Diagnostics;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// One way of running a MoEfied model's experts, scored by <see cref="ExpertVariants.Score"/>: every expert (neither
/// <see cref="Pruned"/> nor <see cref="Router"/>), a static pruning mask (<see cref="Pruned"/>: layers × experts
/// characters, '1' for a pruned expert, row-major, so a plan travels as text), or top-<see cref="TopK"/> routing per token
/// with <see cref="Router"/> (see <see cref="SparseExpertActivation"/>; the frequency router's static choice is <see cref="Pruned"/>).
/// </summary>
public sealed record ExpertVariant(string Name, string? Pruned = null, string? Router = null, int TopK = 0)
{
    public static ExpertVariant Dense(string name) => new(name);

    public static ExpertVariant Routed(string name, string router, int topK) => new(name, Router: router, TopK: topK);

    /// <summary>Row-major '0'/'1' encoding of a plan's pruned experts.</summary>
    public static string Encode(bool[][] pruned) => string.Concat(pruned.SelectMany(layer => layer.Select(p => p ? '1' : '0')));

    /// <summary>pruned[layer][expert] from the encoding of <see cref="Encode"/>.</summary>
    public static bool[][] Decode(string pruned, ExpertPartition partition) =>
        [.. Enumerable.Range(0, partition.Layers).Select(layer => pruned.Substring(layer * partition.Experts, partition.Experts).Select(c => c == '1').ToArray())];

    /// <summary>True when a mask is well formed for <paramref name="partition"/>.</summary>
    public static bool FitsMask(string pruned, ExpertPartition partition) =>
        pruned.Length == partition.Layers * partition.Experts && pruned.All(c => c is '0' or '1');
}

/// <summary>Held-out scoring of expert variants: what the pruning evaluation and the sparse-activation study run on each language.</summary>
public static class ExpertVariants
{
    /// <summary>
    /// The summed NLL and tokens of <paramref name="texts"/> under each of <paramref name="variants"/>, in their order
    /// (see <see cref="Perplexity.Accumulate"/>): the same texts and variant always give the same sums.
    /// </summary>
    public static IReadOnlyList<PerplexitySum> Score(CausalLanguageModel model, ITokenizer tokenizer, ExpertPartition partition, IReadOnlyList<string> texts,
        IEnumerable<ExpertVariant> variants, int windowLength, int batchSize, CancellationToken cancellationToken = default)
    {
        var sums = new List<PerplexitySum>();
        foreach (var variant in variants)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            using var hook = Hook(model, partition, variant);
            sums.Add(Perplexity.Accumulate(model, tokenizer, texts, windowLength, batchSize, (IFeedForwardHook)hook));
        }
        return sums;
    }

    /// <summary>
    /// Forward tokens/s over <paramref name="texts"/>: dense, then centroid-routed sparse computation at each K, and, when
    /// <paramref name="frequencyPruned"/> gives the frequency router's mask per K, frequency-routed computation (best of
    /// three after a warm-up), on the calling thread's torch settings.
    /// </summary>
    public static SparseSpeed MeasureSpeed(CausalLanguageModel model, ITokenizer tokenizer, ExpertPartition partition, IReadOnlyList<string> texts,
        IEnumerable<int> topK, CancellationToken cancellationToken = default, IReadOnlyDictionary<int, bool[][]>? frequencyPruned = null)
    {
        double Rate(IFeedForwardHook? hook)
        {
            var best = 0.0;
            for (var repeat = 0; repeat < 3; repeat++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var stopwatch = Stopwatch.StartNew();
                var sum = Perplexity.Accumulate(model, tokenizer, texts, hook: hook);
                best = Math.Max(best, sum.Tokens / stopwatch.Elapsed.TotalSeconds);
            }
            return best;
        }
        Rate(null);
        var dense = Rate(null);
        var sparse = new SortedDictionary<int, double>();
        foreach (var k in topK)
        {
            using var hook = new SparseExpertActivation(model, partition, k, SparseExpertActivation.CentroidRouter);
            sparse[k] = Rate(hook);
        }
        SortedDictionary<int, double>? frequency = null;
        foreach (var (k, pruned) in frequencyPruned ?? new Dictionary<int, bool[][]>())
        {
            using var hook = new SparseExpertActivation(model, partition, k, SparseExpertActivation.FrequencyRouter, pruned);
            (frequency ??= [])[k] = Rate(hook);
        }
        return new SparseSpeed(dense, sparse, $"{Environment.ProcessorCount} cores, torch threads {get_num_threads()}", frequency);
    }

    private static IDisposable Hook(CausalLanguageModel model, ExpertPartition partition, ExpertVariant variant)
    {
        if (variant.Router is { } router) return new SparseExpertActivation(model, partition, variant.TopK, router, variant.Pruned is null ? null : ExpertVariant.Decode(variant.Pruned, partition));
        // The dense variant runs the MoE computation with every expert on, like every masked variant.
        if (variant.Pruned is null) return ExpertMask.AllActive(partition);
        return new ExpertMask(partition, tensor(variant.Pruned.Select(c => c == '1' ? 0f : 1f).ToArray(), [partition.Layers, partition.Experts]));
    }
}
