using System.Buffers.Binary;
using Babel.Storage;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// The seven-integer header of a llama2.c legacy (version 0) checkpoint. A negative vocab_size in the file means a
/// separate classifier follows the weights; <see cref="VocabSize"/> is always the positive count.
/// </summary>
public sealed record Llama2cHeader(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, bool SharedClassifier, int SeqLen)
{
    public const int ByteLength = 7 * sizeof(int);
    // llama2.c's export fixes these; they are not stored in the file.
    public const double RmsNormEps = 1e-5;
    public const double RopeTheta = 10000.0;

    public int HeadSize => Dim / Heads;
    public int KvDim => KvHeads * HeadSize;

    /// <summary>Float count of every section in file order, freq_cis tables and the optional classifier included.</summary>
    public long FloatCount => checked(
        (long)VocabSize * Dim
        + (long)Layers * (Dim + (long)Dim * Dim + 2L * KvDim * Dim + (long)Dim * Dim + Dim + 3L * HiddenDim * Dim)
        + Dim
        + 2L * SeqLen * (HeadSize / 2)
        + (SharedClassifier ? 0 : (long)VocabSize * Dim));

    /// <summary>Exact size of a legacy file with this header; throws <see cref="OverflowException"/> for absurd headers.</summary>
    public long ExpectedFileBytes => checked(ByteLength + FloatCount * sizeof(float));

    /// <summary>Parses and sanity-checks the header; <paramref name="source"/> names the file in errors.</summary>
    public static Llama2cHeader Parse(ReadOnlySpan<byte> bytes, string source)
    {
        var fields = new int[7];
        for (var i = 0; i < fields.Length; i++) fields[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(i * sizeof(int))..]);
        var (dim, hidden, layers, heads, kvHeads, vocab, seqLen) = (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]);
        void Require(bool condition, string problem)
        {
            if (!condition) throw new UserInputException($"{source} is not a llama2.c legacy checkpoint: {problem}.");
        }
        Require(dim > 0 && hidden > 0 && layers > 0 && heads > 0 && kvHeads > 0 && seqLen > 0 && vocab != 0 && vocab != int.MinValue,
            $"its header (dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {vocab}, seq_len {seqLen}) has non-positive sizes");
        Require(dim % heads == 0, $"dim {dim} is not a multiple of n_heads {heads}");
        Require(heads % kvHeads == 0, $"n_heads {heads} is not a multiple of n_kv_heads {kvHeads}");
        Require(dim / heads % 2 == 0, $"the head size {dim / heads} is odd, so rotary embeddings cannot pair its dimensions");
        return new Llama2cHeader(dim, hidden, layers, heads, kvHeads, Math.Abs(vocab), vocab > 0, seqLen);
    }

    /// <summary>The Hugging Face config of the converted model (LlamaForCausalLM with llama2.c's fixed constants).</summary>
    public ModelConfig ToModelConfig(string source) => new ModelConfig
    {
        Architecture = ModelConfig.LlamaArchitecture,
        HiddenSize = Dim,
        IntermediateSize = HiddenDim,
        NumHiddenLayers = Layers,
        NumAttentionHeads = Heads,
        NumKeyValueHeads = KvHeads,
        HeadDim = HeadSize,
        VocabSize = VocabSize,
        MaxPositionEmbeddings = SeqLen,
        RmsNormEps = RmsNormEps,
        RopeTheta = RopeTheta,
        TieWordEmbeddings = SharedClassifier,
        BosTokenId = 1,
        EosTokenId = 2,
    }.Validate(source);
}

/// <summary>Imports llama2.c legacy <c>.bin</c> checkpoints into Hugging Face names, layout and RoPE convention.</summary>
public static class Llama2cCheckpoint
{
    public const string FormatName = "llama2c";

    public static Llama2cHeader ReadHeader(string path)
    {
        using var file = Open(path);
        return ReadHeader(file, path);
    }

    /// <summary>Reads <paramref name="path"/> into Hugging Face tensors (q/k rows permuted to rotate-half RoPE) and config.</summary>
    public static ModelCheckpoint Read(string path)
    {
        using var file = Open(path);
        var header = ReadHeader(file, path);
        var config = header.ToModelConfig(path);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            long offset = Llama2cHeader.ByteLength;
            Tensor Next(params long[] shape)
            {
                var tensor = empty(shape, ScalarType.Float32);
                try
                {
                    TensorBytes.ReadInto(file, offset, tensor, SafeTensorsDtype.F32, path);
                }
                catch
                {
                    tensor.Dispose();
                    throw;
                }
                offset += shape.Aggregate(1L, (a, b) => a * b) * sizeof(float);
                return tensor;
            }
            void PerLayer(string suffix, Func<Tensor, Tensor>? transform, params long[] shape)
            {
                for (var layer = 0; layer < header.Layers; layer++)
                {
                    var tensor = Next(shape);
                    if (transform is not null)
                    {
                        var transformed = transform(tensor);
                        tensor.Dispose();
                        tensor = transformed;
                    }
                    tensors.Add($"model.layers.{layer}.{suffix}", tensor);
                }
            }
            var (dim, hidden, kvDim, headSize) = (header.Dim, header.HiddenDim, header.KvDim, header.HeadSize);
            tensors.Add("model.embed_tokens.weight", Next(header.VocabSize, dim));
            PerLayer("input_layernorm.weight", null, dim);
            PerLayer("self_attn.q_proj.weight", w => InterleavedToHalfRotary(w, header.Heads, headSize), dim, dim);
            PerLayer("self_attn.k_proj.weight", w => InterleavedToHalfRotary(w, header.KvHeads, headSize), kvDim, dim);
            PerLayer("self_attn.v_proj.weight", null, kvDim, dim);
            PerLayer("self_attn.o_proj.weight", null, dim, dim);
            PerLayer("post_attention_layernorm.weight", null, dim);
            PerLayer("mlp.gate_proj.weight", null, hidden, dim);
            PerLayer("mlp.down_proj.weight", null, dim, hidden);
            PerLayer("mlp.up_proj.weight", null, hidden, dim);
            tensors.Add("model.norm.weight", Next(dim));
            // freq_cis_real and freq_cis_imag: Babel computes RoPE itself.
            offset += 2L * header.SeqLen * (headSize / 2) * sizeof(float);
            if (!header.SharedClassifier)
            {
                tensors.Add(ModelCheckpoint.LmHeadName, Next(header.VocabSize, dim));
            }
            var ordered = config.ExpectedTensors().ToDictionary(e => e.Name, e => tensors[e.Name], StringComparer.Ordinal);
            return new ModelCheckpoint(config, ordered);
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>Converts <paramref name="binPath"/> into a Hugging Face model folder at <paramref name="outputDirectory"/>.</summary>
    public static ModelConfig Convert(string binPath, string outputDirectory)
    {
        using var checkpoint = Read(binPath);
        ModelCheckpoint.Save(outputDirectory, checkpoint.Config, checkpoint.Tensors);
        return checkpoint.Config;
    }

    /// <summary>
    /// Reorders the rows of a q or k projection from llama2.c's interleaved RoPE pairs (2i, 2i+1) to Hugging Face's
    /// halves (i, i + h/2) within each head: HF row i comes from row 2i, HF row h/2 + i from row 2i + 1.
    /// </summary>
    public static Tensor InterleavedToHalfRotary(Tensor weight, int heads, int headSize)
    {
        using var scope = NewDisposeScope();
        var columns = weight.shape[1];
        return weight.view(heads, headSize / 2, 2, columns)
            .transpose(1, 2)
            .reshape(heads * headSize, columns)
            .contiguous()
            .MoveToOuterDisposeScope();
    }

    private static Llama2cHeader ReadHeader(SafeFileHandle file, string path)
    {
        var length = RandomAccess.GetLength(file);
        if (length < Llama2cHeader.ByteLength)
        {
            throw new UserInputException($"{path} has {length} bytes, fewer than the {Llama2cHeader.ByteLength}-byte llama2.c header; it is truncated or not a llama2.c checkpoint.");
        }
        Span<byte> bytes = stackalloc byte[Llama2cHeader.ByteLength];
        TensorBytes.ReadExactly(file, 0, bytes, path);
        var header = Llama2cHeader.Parse(bytes, path);
        long expected;
        try
        {
            expected = checked(header.ExpectedFileBytes);
        }
        catch (OverflowException)
        {
            throw new UserInputException($"{path} is not a llama2.c legacy checkpoint: its header describes an impossibly large model.");
        }
        if (length < expected)
        {
            throw new UserInputException($"{path} is truncated: its header (dim {header.Dim}, n_layers {header.Layers}, vocab_size {header.VocabSize}) needs {expected} bytes but the file has {length}; copy or export it again.");
        }
        if (length > expected)
        {
            throw new UserInputException($"{path} has {length} bytes but a llama2.c legacy checkpoint with its header needs exactly {expected}; it is another llama2.c export version or not a llama2.c checkpoint.");
        }
        return header;
    }

    private static SafeFileHandle Open(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new UserInputException($"{path} does not exist; pass the path of a llama2.c .bin checkpoint.", e);
        }
    }
}
