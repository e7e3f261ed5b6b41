using System.Runtime.InteropServices;
using System.Text;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Benchmarks;

/// <summary>
/// Writes a Babel model as a llama2.c legacy (version 0) checkpoint and a placeholder <c>tokenizer.bin</c>, so that
/// llama2.c's <c>run.c</c> decodes the very weights Babel decodes (<c>babel bench decode</c>). The inverse of
/// <see cref="Llama2cCheckpoint.Read"/>: the same section order, q/k rows permuted back to interleaved RoPE pairs.
/// </summary>
public static class Llama2cExport
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/>: the seven-int32 header, then float32 weights grouped by
    /// kind over all layers, zeroed RoPE tables (run.c skips them), and the classifier when it is not tied.
    /// </summary>
    public static void WriteCheckpoint(CausalLanguageModel model, string path)
    {
        var c = model.Config;
        var header = CheckExpressible(c);
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var weights = model.StateDict();
        var temporary = path + ".partial";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<int> fields = [header.Dim, header.HiddenDim, header.Layers, header.Heads, header.KvHeads, header.SharedClassifier ? header.VocabSize : -header.VocabSize, header.SeqLen];
            file.Write(MemoryMarshal.AsBytes(fields));
            void Write(Tensor tensor)
            {
                using var floats = tensor.detach().to(ScalarType.Float32, CPU).contiguous();
                file.Write(MemoryMarshal.AsBytes(floats.data<float>().ToArray().AsSpan()));
            }
            void PerLayer(string suffix, Func<Tensor, Tensor>? transform = null)
            {
                for (var layer = 0; layer < c.NumHiddenLayers; layer++)
                {
                    var tensor = weights[$"model.layers.{layer}.{suffix}"];
                    Write(transform is null ? tensor : transform(tensor));
                }
            }
            Write(weights["model.embed_tokens.weight"]);
            PerLayer("input_layernorm.weight");
            PerLayer("self_attn.q_proj.weight", w => HalfToInterleavedRotary(w, header.Heads, header.HeadSize));
            PerLayer("self_attn.k_proj.weight", w => HalfToInterleavedRotary(w, header.KvHeads, header.HeadSize));
            PerLayer("self_attn.v_proj.weight");
            PerLayer("self_attn.o_proj.weight");
            PerLayer("post_attention_layernorm.weight");
            PerLayer("mlp.gate_proj.weight");
            PerLayer("mlp.down_proj.weight");
            PerLayer("mlp.up_proj.weight");
            Write(weights["model.norm.weight"]);
            Write(zeros(2L * header.SeqLen * (header.HeadSize / 2)));
            if (!header.SharedClassifier) Write(weights[ModelCheckpoint.LmHeadName]);
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// A llama2.c <c>tokenizer.bin</c> of <paramref name="vocabSize"/> pieces: run.c needs one to start, and the benchmark
    /// never reads the text. Token 0 is <c>&lt;unk&gt;</c>, 1 <c>&lt;s&gt;</c>, 2 <c>&lt;/s&gt;</c>, the rest short placeholders.
    /// </summary>
    public static void WriteTokenizer(int vocabSize, string path)
    {
        var pieces = Enumerable.Range(0, vocabSize).Select(i => i switch { 0 => "<unk>", 1 => "<s>", 2 => "</s>", _ => $"t{i}" }).ToList();
        using var file = new BinaryWriter(File.Create(path));
        file.Write(pieces.Max(p => Encoding.UTF8.GetByteCount(p)));
        foreach (var piece in pieces)
        {
            var bytes = Encoding.UTF8.GetBytes(piece);
            file.Write(0f);
            file.Write(bytes.Length);
            file.Write(bytes);
        }
    }

    /// <summary>
    /// Reorders the rows of a q or k projection from Hugging Face's rotate-half halves (i, i + h/2) to llama2.c's interleaved
    /// pairs (2i, 2i+1) within each head: the inverse of <see cref="Llama2cCheckpoint.InterleavedToHalfRotary"/>.
    /// </summary>
    public static Tensor HalfToInterleavedRotary(Tensor weight, int heads, int headSize)
    {
        using var scope = NewDisposeScope();
        var columns = weight.shape[1];
        return weight.view(heads, 2, headSize / 2, columns)
            .transpose(1, 2)
            .reshape(heads * headSize, columns)
            .contiguous()
            .MoveToOuterDisposeScope();
    }

    /// <summary>The llama2.c header of <paramref name="c"/>, or an exception naming what llama2.c's format cannot hold.</summary>
    private static Llama2cHeader CheckExpressible(ModelConfig c)
    {
        string? problem =
            c.HeadDim * c.NumAttentionHeads != c.HiddenSize ? "its head_dim × heads differs from hidden_size"
            : c.AttentionBias || c.MlpBias ? "it has biases"
            : c.RopeScaling is not null ? "it scales RoPE"
            : c.RopeTheta != Llama2cHeader.RopeTheta ? $"its rope_theta is not {Llama2cHeader.RopeTheta}"
            : c.RmsNormEps != Llama2cHeader.RmsNormEps ? $"its rms_norm_eps is not {Llama2cHeader.RmsNormEps}"
            : Enumerable.Range(0, c.NumHiddenLayers).Any(l => c.IntermediateSizeOf(l) != c.IntermediateSize) ? "its FFN widths differ by layer"
            : Enumerable.Range(0, c.NumHiddenLayers).Any(l => c.SlidingWindowOf(l) is not null) ? "it has sliding-window layers"
            : null;
        if (problem is not null) throw new ArgumentException($"A llama2.c checkpoint cannot hold this model: {problem}.", nameof(c));
        return new Llama2cHeader(c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.VocabSize,
            c.TieWordEmbeddings, c.MaxPositionEmbeddings);
    }
}
