using System.Diagnostics;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Benchmarks;

/// <summary>One measured quantity of <c>babel bench model</c>.</summary>
public sealed record BenchmarkResult(string Name, double Value, string Unit, string Detail);

/// <summary>
/// Measures, in one process: the machine's float32 matmul peak, the forward throughput of a d=512 Llama against
/// that peak, and greedy generation speed with and without the key/value cache.
/// </summary>
public static class ModelBenchmark
{
    /// <summary>The forward benchmark's model: d=512, 8 heads (4 KV), 8 layers, FFN 1536, vocab 4096.</summary>
    public static ModelConfig ForwardConfig => new()
    {
        HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 4,
        HeadDim = 64, VocabSize = 4096, MaxPositionEmbeddings = 1024, RmsNormEps = 1e-5,
    };

    /// <summary>The shape of llama2.c's stories260K (dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads, vocab 512).</summary>
    public static ModelConfig Stories260KConfig => new()
    {
        HiddenSize = 64, IntermediateSize = 172, NumHiddenLayers = 5, NumAttentionHeads = 8, NumKeyValueHeads = 4,
        HeadDim = 8, VocabSize = 512, MaxPositionEmbeddings = 512, RmsNormEps = 1e-5, TieWordEmbeddings = true,
    };

    public static double MatmulGflops(int size, int threads, TimeSpan budget)
    {
        TorchRuntime.Initialize(threads);
        using var scope = NewDisposeScope();
        var a = randn(size, size);
        var b = randn(size, size);
        var c = empty(size, size);
        for (var i = 0; i < 2; i++) mm(a, b).Dispose();
        var seconds = Repeat(() => { using var r = mm(a, b); }, budget, out var repetitions);
        return 2.0 * size * size * size * repetitions / seconds / 1e9;
    }

    /// <summary>Forward tokens/s and GFLOP/s (matmuls plus causal attention) at batch × length.</summary>
    public static (double TokensPerSecond, double Gflops) Forward(ModelConfig config, int batch, int length, int threads, TimeSpan budget)
    {
        TorchRuntime.Initialize(threads);
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(0);
        model.eval();
        using var guard = no_grad();
        using var ids = randint(config.VocabSize, [batch, length]);
        model.Forward(ids).Dispose();
        var seconds = Repeat(() => model.Forward(ids).Dispose(), budget, out var repetitions);
        var tokens = (double)batch * length * repetitions;
        return (tokens / seconds, tokens * ForwardFlopsPerToken(config, length) / seconds / 1e9);
    }

    /// <summary>Multiply-adds ×2 per token: every projection, the LM head, and QKᵀ plus AV over the causal prefix (mean length (n+1)/2).</summary>
    public static double ForwardFlopsPerToken(ModelConfig c, int length)
    {
        double q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
        var perLayer = c.HiddenSize * (q + 2 * kv) + q * c.HiddenSize + 3.0 * c.HiddenSize * c.IntermediateSize + 2.0 * q * (length + 1) / 2;
        return 2.0 * (c.NumHiddenLayers * perLayer + (double)c.VocabSize * c.HiddenSize);
    }

    /// <summary>Aggregate generated tokens/s for <paramref name="batch"/> prompts of <paramref name="promptLength"/> tokens, greedy, no early stop.</summary>
    public static double Generation(CausalLanguageModel model, int batch, int promptLength, int newTokens, bool useCache, int threads)
    {
        TorchRuntime.Initialize(threads);
        var random = new Random(1);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => new[] { model.Config.BosTokenId }.Concat(Enumerable.Range(0, promptLength - 1).Select(_ => random.Next(3, model.Config.VocabSize))).ToArray())
            .ToList();
        var options = new SamplingOptions { MaxNewTokens = newTokens, StopAtEos = false };
        TextGenerator.Generate(model, prompts, options with { MaxNewTokens = 8 }, useCache);
        var stopwatch = Stopwatch.StartNew();
        TextGenerator.Generate(model, prompts, options, useCache);
        return batch * (double)newTokens / stopwatch.Elapsed.TotalSeconds;
    }

    /// <summary>Peak resident memory of this process so far, in MiB (VmHWM).</summary>
    public static double PeakResidentMegabytes()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
    }

    private static double Repeat(Action action, TimeSpan budget, out int repetitions)
    {
        var stopwatch = Stopwatch.StartNew();
        repetitions = 0;
        do
        {
            action();
            repetitions++;
        } while (stopwatch.Elapsed < budget || repetitions < 3);
        return stopwatch.Elapsed.TotalSeconds;
    }
}
