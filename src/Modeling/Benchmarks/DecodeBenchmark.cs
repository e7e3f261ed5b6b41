using System.Diagnostics;
using System.Runtime.InteropServices;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Benchmarks;

/// <summary>One model and thread count of <c>babel bench decode</c>: Babel's and run.c's batch-1 greedy tokens/s on the same weights.</summary>
/// <param name="Model">Which model shape.</param>
/// <param name="Threads">Torch threads for Babel, OMP_NUM_THREADS for run.c.</param>
/// <param name="WeightBytes">Bytes of weights one decoding step reads: every parameter except an untied embedding table (one row of it is read).</param>
/// <param name="BabelTokensPerSecond">Babel's greedy tokens/s.</param>
/// <param name="ReferenceTokensPerSecond">run.c's rate, or null when run.c could not be built.</param>
/// <param name="BandwidthBytesPerSecond">The machine's read bandwidth with as many threads, over an array larger than the last-level cache.</param>
public sealed record DecodeSpeed(string Model, int Threads, long WeightBytes, double BabelTokensPerSecond, double? ReferenceTokensPerSecond, double BandwidthBytesPerSecond)
{
    /// <summary>Babel's weight bytes streamed per second.</summary>
    public double BabelBytesPerSecond => WeightBytes * BabelTokensPerSecond;
}

/// <summary>The rows of <c>babel bench decode</c> and what the machine says about its caches.</summary>
public sealed record DecodeReport(IReadOnlyList<DecodeSpeed> Rows, long? LastLevelCacheBytes, long BandwidthArrayBytes, string? ReferenceProblem);

/// <summary>
/// <c>babel bench decode</c>: batch-1 greedy decoding of random-weight models of stories110M's and stories260K's shapes by
/// Babel (<see cref="Generation.TextGenerator"/> with the KV cache) and by llama2.c's run.c on the same weights (exported
/// with <see cref="Llama2cExport"/>), at each thread count, with the weight bytes streamed per second against the machine's
/// read bandwidth measured in the same run.
/// </summary>
public static partial class DecodeBenchmark
{
    /// <summary>stories110M's shape: d=768, 12 layers, 12 heads, FFN 2048, vocab 32,000, 1024 positions, tied classifier.</summary>
    public static ModelConfig Stories110MConfig => DtypeBenchmark.DecodeConfig with { TieWordEmbeddings = true };

    /// <summary>
    /// Measures every (model, thread count) pair <paramref name="rounds"/> times, Babel and run.c taking turns, and keeps each
    /// one's best round (a neighbour's load that comes and goes then favours neither). <paramref name="steps"/> positions are
    /// decoded from BOS (at most the model's context). <paramref name="scratch"/> holds the exported weights and run.c.
    /// </summary>
    public static DecodeReport Measure(string? runCSource, string scratch, IReadOnlyList<int> threads, int steps, int rounds)
    {
        TorchRuntime.Initialize(threads.Max());
        var reference = ReferenceDecoder.Build(runCSource, scratch, out var problem);
        var cache = LastLevelCacheBytes();
        // Four times the last-level cache, at least 1 GiB, so that the sum streams from memory.
        var arrayBytes = Math.Max(1L << 30, 4 * (cache ?? 0));
        var bandwidth = threads.ToDictionary(t => t, _ => 0.0);
        var rows = new List<DecodeSpeed>();
        foreach (var (name, config) in new[] { ("110M", Stories110MConfig), ("260K", ModelBenchmark.Stories260KConfig) })
        {
            using var model = RandomModel(config);
            var checkpoint = Path.Combine(scratch, "model.bin");
            var tokenizer = Path.Combine(scratch, "tokenizer.bin");
            Llama2cExport.WriteCheckpoint(model, checkpoint);
            Llama2cExport.WriteTokenizer(config.VocabSize, tokenizer);
            var length = Math.Min(steps, config.MaxPositionEmbeddings);
            var best = threads.ToDictionary(t => t, _ => (Babel: 0.0, Reference: 0.0));
            for (var round = 0; round < rounds; round++)
            {
                foreach (var t in threads)
                {
                    var babel = ModelBenchmark.Generation(model, 1, 1, length - 1, useCache: true, threads: t);
                    var c = reference?.TokensPerSecond(checkpoint, tokenizer, length, t) ?? 0;
                    best[t] = (Math.Max(best[t].Babel, babel), Math.Max(best[t].Reference, c));
                    bandwidth[t] = Math.Max(bandwidth[t], ReadBandwidth(arrayBytes, t));
                }
            }
            var weightBytes = WeightBytesPerStep(model);
            rows.AddRange(threads.Select(t => new DecodeSpeed(name, t, weightBytes, best[t].Babel, reference is null ? null : best[t].Reference, 0)));
        }
        TorchRuntime.Initialize(1);
        return new DecodeReport([.. rows.Select(r => r with { BandwidthBytesPerSecond = bandwidth[r.Threads] })], cache, arrayBytes, problem);
    }

    /// <summary>A model of <paramref name="config"/> with N(0, 0.02) weights, whose BOS row (token 1) is zero so that greedy decoding never picks it: run.c stops at BOS.</summary>
    public static CausalLanguageModel RandomModel(ModelConfig config)
    {
        var model = new CausalLanguageModel(config);
        model.InitializeWeights(0);
        model.eval();
        using var guard = no_grad();
        model.EmbedTokens[1].zero_();
        if (!config.TieWordEmbeddings) model.LmHead[1].zero_();
        return model;
    }

    /// <summary>Bytes read per decoding step: every parameter, except an untied embedding table, of which one row is read.</summary>
    public static long WeightBytesPerStep(CausalLanguageModel model)
    {
        var bytes = model.parameters().Sum(p => p.numel() * p.ElementSize);
        return model.Config.TieWordEmbeddings ? bytes : bytes - model.EmbedTokens.numel() * model.EmbedTokens.ElementSize;
    }

    /// <summary>Bytes/s of summing a float32 array of <paramref name="bytes"/> with <paramref name="threads"/> threads (best of three).</summary>
    public static double ReadBandwidth(long bytes, int threads)
    {
        TorchRuntime.Initialize(threads);
        using var array = ones(bytes / sizeof(float));
        var best = double.MaxValue;
        for (var i = 0; i < 4; i++)
        {
            var stopwatch = Stopwatch.StartNew();
            using var sum = array.sum();
            // The first pass also faults the pages in; it does not count.
            if (i > 0) best = Math.Min(best, stopwatch.Elapsed.TotalSeconds);
        }
        return bytes / best;
    }

    /// <summary>The last-level (L3) cache size as the C library reports it, or null when unknown.</summary>
    public static long? LastLevelCacheBytes()
    {
        try
        {
            var size = NativeMethods.sysconf(NativeMethods.LevelThreeCacheSize);
            return size > 0 ? size : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    private static partial class NativeMethods
    {
        // glibc's _SC_LEVEL3_CACHE_SIZE.
        public const int LevelThreeCacheSize = 194;

        [LibraryImport("libc", EntryPoint = "sysconf")]
        public static partial long sysconf(int name);
    }
}
