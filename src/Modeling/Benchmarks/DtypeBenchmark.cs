using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Benchmarks;

/// <summary>How fast one element type computes here: matmul peak, batched forward, batch-1 decoding.</summary>
public sealed record DtypeSpeed(string Dtype, double MatmulGflops, double ForwardTokensPerSecond, double DecodeTokensPerSecond);

/// <summary>What loading a checkpoint cost in resident memory (VmHWM) against its weight bytes.</summary>
public sealed record LoadMemory(string Dtype, long WeightBytes, long ParameterBytes, double ResidentBeforeMegabytes, double PeakMegabytes, double Seconds)
{
    /// <summary>Peak resident memory of the whole process over the bytes of the weights in the file.</summary>
    public double PeakOverWeights => PeakMegabytes * 1024 * 1024 / WeightBytes;
    /// <summary>Peak resident memory over the bytes the loaded parameters take (twice the weights for bf16 loaded as float32).</summary>
    public double PeakOverParameters => PeakMegabytes * 1024 * 1024 / ParameterBytes;
}

/// <summary>
/// <c>babel bench dtype</c> and <c>babel bench load</c>: the speed of float32, bfloat16 and float16 on this machine's
/// CPU, and the peak resident memory of loading a generated sharded bfloat16 checkpoint.
/// </summary>
public static class DtypeBenchmark
{
    /// <summary>The decoding benchmark's model: stories110M's shape (d=768, 12 layers, vocab 32,000).</summary>
    public static ModelConfig DecodeConfig => new()
    {
        HiddenSize = 768, IntermediateSize = 2048, NumHiddenLayers = 12, NumAttentionHeads = 12, NumKeyValueHeads = 12,
        HeadDim = 64, VocabSize = 32000, MaxPositionEmbeddings = 1024, RmsNormEps = 1e-5,
    };

    /// <summary>A ~1 GB checkpoint in bfloat16: d=2048, 8 layers, FFN 5632, 16 heads (4 KV), vocab 32,000, untied (491.8 M parameters).</summary>
    public static ModelConfig LoadConfig => new()
    {
        HiddenSize = 2048, IntermediateSize = 5632, NumHiddenLayers = 8, NumAttentionHeads = 16, NumKeyValueHeads = 4,
        HeadDim = 128, VocabSize = 32000, MaxPositionEmbeddings = 2048, RmsNormEps = 1e-5, TorchDtype = "bfloat16",
    };

    /// <summary>
    /// Matmul GFLOP/s (2048³, <paramref name="threads"/> threads), forward tokens/s of the d=512 model at batch 8 × 256
    /// (<paramref name="threads"/> threads) and greedy batch-1 decoding tokens/s of <see cref="DecodeConfig"/> (one thread,
    /// as workers decode), for each of <paramref name="dtypes"/>. The types take turns in each of <paramref name="rounds"/>
    /// rounds and each keeps its best round, so a neighbour's load that comes and goes does not favour one type.
    /// </summary>
    public static IReadOnlyList<DtypeSpeed> Compare(IReadOnlyList<ModelDtype> dtypes, int threads, TimeSpan budget, int newTokens, int rounds)
    {
        TorchRuntime.Initialize(threads);
        var types = dtypes.Select(d => ModelDtypes.Resolve(d, SafeTensorsDtype.F32)).ToList();
        var forwardModels = types.Select(t => Prepared(ModelBenchmark.ForwardConfig, t)).ToList();
        var decodeModels = types.Select(t => Prepared(DecodeConfig, t)).ToList();
        var best = types.Select(_ => (Matmul: 0.0, Forward: 0.0, Decode: 0.0)).ToList();
        try
        {
            for (var round = 0; round < rounds; round++)
            {
                for (var i = 0; i < types.Count; i++)
                {
                    TorchRuntime.Initialize(threads);
                    var matmul = Matmul(types[i], budget);
                    var forward = Forward(forwardModels[i], budget);
                    var decode = ModelBenchmark.Generation(decodeModels[i], 1, 8, newTokens, useCache: true, threads: 1);
                    best[i] = (Math.Max(best[i].Matmul, matmul), Math.Max(best[i].Forward, forward), Math.Max(best[i].Decode, decode));
                }
            }
        }
        finally
        {
            foreach (var model in forwardModels.Concat(decodeModels)) model.Dispose();
        }
        return [.. types.Select((t, i) => new DtypeSpeed(t.ToString(), best[i].Matmul, best[i].Forward, best[i].Decode))];
    }

    private static CausalLanguageModel Prepared(ModelConfig config, ScalarType dtype)
    {
        var model = new CausalLanguageModel(config, dtype);
        model.InitializeWeights(0);
        model.eval();
        return model;
    }

    private static double Matmul(ScalarType dtype, TimeSpan budget)
    {
        using var scope = NewDisposeScope();
        var a = randn(2048, 2048).to_type(dtype);
        var b = randn(2048, 2048).to_type(dtype);
        mm(a, b).Dispose();
        var seconds = Repeat(() => mm(a, b).Dispose(), budget, out var repetitions);
        return 2.0 * 2048 * 2048 * 2048 * repetitions / seconds / 1e9;
    }

    private static double Forward(CausalLanguageModel model, TimeSpan budget)
    {
        using var guard = no_grad();
        using var ids = randint(model.Config.VocabSize, [8, 256]);
        model.Forward(ids).Dispose();
        var seconds = Repeat(() => model.Forward(ids).Dispose(), budget, out var repetitions);
        return 8.0 * 256 * repetitions / seconds;
    }

    /// <summary>
    /// Writes a checkpoint of <paramref name="config"/> with random bfloat16 weights (N(0, 0.02), norms 1) into
    /// <paramref name="folder"/> as shards of at most <paramref name="shardBytes"/> plus the index, streaming each tensor
    /// through a 1 MB buffer (so writing it costs this process no memory). Returns the bytes of the weights.
    /// </summary>
    public static long WriteRandomBf16Checkpoint(string folder, ModelConfig config, long shardBytes, int seed = 1)
    {
        Directory.CreateDirectory(folder);
        var tensors = config.ExpectedTensors().Select(e => (e.Name, e.Shape)).ToList();
        var shards = new List<List<(string Name, long[] Shape)>>();
        long size = 0;
        foreach (var tensor in tensors)
        {
            var bytes = SafeTensors.ByteSize(tensor.Shape, SafeTensorsDtype.BF16);
            if (shards.Count == 0 || size + bytes > shardBytes && size > 0)
            {
                shards.Add([]);
                size = 0;
            }
            shards[^1].Add(tensor);
            size += bytes;
        }
        var random = new Random(seed);
        var buffer = new byte[1 << 20];
        Span<byte> length = stackalloc byte[8];
        var weightMap = new JsonObject();
        for (var i = 0; i < shards.Count; i++)
        {
            var name = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors");
            // HeaderBytes lays the tensors out in the order given: write the data in that order.
            var ordered = shards[i].OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
            var header = SafeTensors.HeaderBytes(ordered, SafeTensorsDtype.BF16, null);
            using var stream = File.Create(Path.Combine(folder, name));
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (tensorName, shape) in ordered)
            {
                var isNorm = tensorName.EndsWith("norm.weight", StringComparison.Ordinal);
                for (var left = SafeTensors.ByteSize(shape, SafeTensorsDtype.BF16); left > 0;)
                {
                    var count = (int)Math.Min(buffer.Length, left);
                    for (var j = 0; j < count; j += 2)
                    {
                        // Box-Muller would be exact; a sum of uniforms is normal enough for timing and memory.
                        var value = isNorm ? 1f : (float)((random.NextDouble() + random.NextDouble() + random.NextDouble() - 1.5) * 0.04);
                        BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(j), (ushort)(BitConverter.SingleToInt32Bits(value) >> 16));
                    }
                    stream.Write(buffer, 0, count);
                    left -= count;
                }
                weightMap[tensorName] = name;
            }
        }
        var total = tensors.Sum(t => SafeTensors.ByteSize(t.Shape, SafeTensorsDtype.BF16));
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(folder, ModelCheckpoint.IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        config.Save(folder);
        return total;
    }

    /// <summary>
    /// Loads <paramref name="folder"/> as <paramref name="dtype"/> and reports this process's peak resident memory
    /// (<c>/proc/self/status</c> VmHWM, which counts everything the process ever held: run it first in a fresh process).
    /// </summary>
    public static LoadMemory MeasureLoad(string folder, ModelDtype dtype, long weightBytes)
    {
        TorchRuntime.Initialize(1);
        GC.Collect();
        var before = ResidentMegabytes("VmRSS:");
        var stopwatch = Stopwatch.StartNew();
        using var model = CausalLanguageModel.Load(folder, dtype);
        var seconds = stopwatch.Elapsed.TotalSeconds;
        var parameterBytes = model.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        return new LoadMemory(model.Dtype.ToString(), weightBytes, parameterBytes, before, ModelBenchmark.PeakResidentMegabytes(), seconds);
    }

    private static double ResidentMegabytes(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    private static double Repeat(Action action, TimeSpan budget, out int repetitions)
    {
        var stopwatch = Stopwatch.StartNew();
        repetitions = 0;
        do
        {
            action();
            repetitions++;
        } while (stopwatch.Elapsed < budget);
        return stopwatch.Elapsed.TotalSeconds;
    }
}
