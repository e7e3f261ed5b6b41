using Babel.Modeling.Checkpoints;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

/// <summary>
/// A deliberately plain Llama/Qwen2 forward over Hugging Face state-dict tensors (rotate-half RoPE, GQA, SwiGLU,
/// optional q/k/v bias), accumulating in double: the oracle for the TorchSharp transformer module.
/// </summary>
public static class HuggingFaceReferenceForward
{
    /// <summary>Logits float[position][vocab] for <paramref name="tokens"/>, each position attending to 0..itself.</summary>
    public static float[][] Logits(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, int[] tokens) =>
        Logits(config, tensors.ToDictionary(p => p.Key, p => ToArray(p.Value)), tokens);

    public static float[][] Logits(ModelConfig config, IReadOnlyDictionary<string, float[]> weights, int[] tokens)
    {
        var (hidden, heads, kvHeads, headDim) = (config.HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim);
        var group = heads / kvHeads;
        float[] W(string name) => weights[name];
        float[]? Bias(string name) => config.AttentionBias ? weights[name] : null;

        var x = tokens.Select(t => W("model.embed_tokens.weight").AsSpan(t * hidden, hidden).ToArray()).ToArray();
        for (var l = 0; l < config.NumHiddenLayers; l++)
        {
            var p = $"model.layers.{l}.";
            var q = new float[tokens.Length][];
            var k = new float[tokens.Length][];
            var v = new float[tokens.Length][];
            for (var pos = 0; pos < tokens.Length; pos++)
            {
                var h = RmsNorm(x[pos], W(p + "input_layernorm.weight"), config.RmsNormEps);
                q[pos] = Linear(W(p + "self_attn.q_proj.weight"), Bias(p + "self_attn.q_proj.bias"), h, heads * headDim);
                k[pos] = Linear(W(p + "self_attn.k_proj.weight"), Bias(p + "self_attn.k_proj.bias"), h, kvHeads * headDim);
                v[pos] = Linear(W(p + "self_attn.v_proj.weight"), Bias(p + "self_attn.v_proj.bias"), h, kvHeads * headDim);
                RotateHalf(q[pos], heads, headDim, pos, config.RopeTheta);
                RotateHalf(k[pos], kvHeads, headDim, pos, config.RopeTheta);
            }
            for (var pos = 0; pos < tokens.Length; pos++)
            {
                var attended = new float[heads * headDim];
                for (var head = 0; head < heads; head++)
                {
                    var kvOffset = head / group * headDim;
                    var scores = new double[pos + 1];
                    for (var t = 0; t <= pos; t++)
                    {
                        double dot = 0;
                        for (var i = 0; i < headDim; i++) dot += (double)q[pos][head * headDim + i] * k[t][kvOffset + i];
                        scores[t] = dot / Math.Sqrt(headDim);
                    }
                    var max = scores.Max();
                    var total = 0.0;
                    for (var t = 0; t <= pos; t++) total += scores[t] = Math.Exp(scores[t] - max);
                    for (var i = 0; i < headDim; i++)
                    {
                        double sum = 0;
                        for (var t = 0; t <= pos; t++) sum += scores[t] / total * v[t][kvOffset + i];
                        attended[head * headDim + i] = (float)sum;
                    }
                }
                var output = Linear(W(p + "self_attn.o_proj.weight"), null, attended, hidden);
                for (var i = 0; i < hidden; i++) x[pos][i] += output[i];

                var h = RmsNorm(x[pos], W(p + "post_attention_layernorm.weight"), config.RmsNormEps);
                var gate = Linear(W(p + "mlp.gate_proj.weight"), null, h, config.IntermediateSize);
                var up = Linear(W(p + "mlp.up_proj.weight"), null, h, config.IntermediateSize);
                for (var i = 0; i < gate.Length; i++) gate[i] = (float)(gate[i] / (1 + Math.Exp(-gate[i])) * up[i]);
                var down = Linear(W(p + "mlp.down_proj.weight"), null, gate, hidden);
                for (var i = 0; i < hidden; i++) x[pos][i] += down[i];
            }
        }
        var classifier = config.TieWordEmbeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
        return x.Select(row => Linear(classifier, null, RmsNorm(row, W("model.norm.weight"), config.RmsNormEps), config.VocabSize)).ToArray();
    }

    /// <summary>Copies a tensor's values (any dtype) into a float array in row-major order.</summary>
    public static float[] ToArray(Tensor tensor)
    {
        using var values = tensor.detach().cpu().to_type(ScalarType.Float32).contiguous();
        return values.data<float>().ToArray();
    }

    // Hugging Face's rotate_half: dimension i pairs with i + headDim/2 within each head.
    private static void RotateHalf(float[] vector, int heads, int headDim, int position, double theta)
    {
        var half = headDim / 2;
        for (var head = 0; head < heads; head++)
        {
            for (var i = 0; i < half; i++)
            {
                var frequency = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
                var angle = position * frequency;
                var (a, b) = (vector[head * headDim + i], vector[head * headDim + half + i]);
                vector[head * headDim + i] = (float)(a * Math.Cos(angle) - b * Math.Sin(angle));
                vector[head * headDim + half + i] = (float)(b * Math.Cos(angle) + a * Math.Sin(angle));
            }
        }
    }

    private static float[] RmsNorm(float[] x, float[] weight, double epsilon)
    {
        double squares = 0;
        foreach (var value in x) squares += (double)value * value;
        var scale = 1.0 / Math.Sqrt(squares / x.Length + epsilon);
        return x.Select((value, i) => (float)(weight[i] * (value * scale))).ToArray();
    }

    private static float[] Linear(float[] weight, float[]? bias, float[] x, int rows)
    {
        var result = new float[rows];
        for (var r = 0; r < rows; r++)
        {
            double sum = bias?[r] ?? 0;
            for (var c = 0; c < x.Length; c++) sum += (double)weight[(long)r * x.Length + c] * x[c];
            result[r] = (float)sum;
        }
        return result;
    }
}
