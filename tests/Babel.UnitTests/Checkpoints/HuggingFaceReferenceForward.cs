using Babel.Modeling.Checkpoints;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

/// <summary>
/// A deliberately plain Llama/Qwen2 forward over Hugging Face state-dict tensors (rotate-half RoPE, GQA, SwiGLU,
/// optional q/k/v and MLP bias, rope_scaling, sliding-window attention), accumulating in double: the oracle for the
/// TorchSharp transformer module. Its rope_scaling frequencies are written out here from transformers' formulas,
/// independently of <c>RotaryEmbedding</c>.
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
        float[]? MlpBias(string name) => config.MlpBias ? weights[name] : null;
        var frequencies = InverseFrequencies(config, tokens.Length);
        var attentionFactor = AttentionFactor(config);

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
                RotateHalf(q[pos], heads, headDim, pos, frequencies, attentionFactor);
                RotateHalf(k[pos], kvHeads, headDim, pos, frequencies, attentionFactor);
            }
            // A sliding-window layer lets a query see itself and the window - 1 keys before it.
            var window = config.SlidingWindowOf(l) ?? int.MaxValue;
            for (var pos = 0; pos < tokens.Length; pos++)
            {
                var first = Math.Max(0, pos - window + 1);
                var attended = new float[heads * headDim];
                for (var head = 0; head < heads; head++)
                {
                    var kvOffset = head / group * headDim;
                    var scores = new double[pos + 1];
                    for (var t = first; t <= pos; t++)
                    {
                        double dot = 0;
                        for (var i = 0; i < headDim; i++) dot += (double)q[pos][head * headDim + i] * k[t][kvOffset + i];
                        scores[t] = dot / Math.Sqrt(headDim);
                    }
                    var max = scores.Skip(first).Max();
                    var total = 0.0;
                    for (var t = first; t <= pos; t++) total += scores[t] = Math.Exp(scores[t] - max);
                    for (var i = 0; i < headDim; i++)
                    {
                        double sum = 0;
                        for (var t = first; t <= pos; t++) sum += scores[t] / total * v[t][kvOffset + i];
                        attended[head * headDim + i] = (float)sum;
                    }
                }
                var output = Linear(W(p + "self_attn.o_proj.weight"), null, attended, hidden);
                for (var i = 0; i < hidden; i++) x[pos][i] += output[i];

                var h = RmsNorm(x[pos], W(p + "post_attention_layernorm.weight"), config.RmsNormEps);
                var gate = Linear(W(p + "mlp.gate_proj.weight"), MlpBias(p + "mlp.gate_proj.bias"), h, config.IntermediateSizeOf(l));
                var up = Linear(W(p + "mlp.up_proj.weight"), MlpBias(p + "mlp.up_proj.bias"), h, config.IntermediateSizeOf(l));
                for (var i = 0; i < gate.Length; i++) gate[i] = (float)(gate[i] / (1 + Math.Exp(-gate[i])) * up[i]);
                var down = Linear(W(p + "mlp.down_proj.weight"), MlpBias(p + "mlp.down_proj.bias"), gate, hidden);
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

    /// <summary>
    /// Inverse frequency of each rotary pair for a sequence of <paramref name="sequenceLength"/> tokens, one loop per
    /// rope_scaling type as transformers' modeling_rope_utils defines it.
    /// </summary>
    public static double[] InverseFrequencies(ModelConfig config, int sequenceLength)
    {
        var dim = config.HeadDim;
        var scaling = config.RopeScaling;
        var original = (double)(scaling?.OriginalMaxPositionEmbeddings ?? config.MaxPositionEmbeddings);
        var factor = scaling?.Factor ?? 1;
        var theta = config.RopeTheta;
        if (scaling?.Type == "dynamic" && sequenceLength > original)
        {
            theta *= Math.Pow(factor * sequenceLength / original - factor + 1, dim / (dim - 2.0));
        }
        var result = new double[dim / 2];
        for (var i = 0; i < dim / 2; i++)
        {
            var unscaled = Math.Pow(theta, -2.0 * i / dim);
            result[i] = unscaled;
            if (scaling?.Type == "linear") result[i] = unscaled / factor;
            if (scaling?.Type == "llama3")
            {
                double low = scaling.LowFreqFactor!.Value, high = scaling.HighFreqFactor!.Value;
                var wavelength = 2 * Math.PI / unscaled;
                if (wavelength > original / low) result[i] = unscaled / factor;
                else if (wavelength >= original / high)
                {
                    var smooth = (original / wavelength - low) / (high - low);
                    result[i] = (1 - smooth) * unscaled / factor + smooth * unscaled;
                }
            }
            if (scaling?.Type == "yarn")
            {
                // The dimension at which a wavelength makes `rotations` turns over the original context.
                double CorrectionDimension(double rotations) => dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(config.RopeTheta));
                var low = Math.Max(Math.Floor(CorrectionDimension(scaling.BetaFast ?? 32)), 0);
                var high = Math.Min(Math.Ceiling(CorrectionDimension(scaling.BetaSlow ?? 1)), dim - 1);
                if (low == high) high += 0.001;
                var ramp = Math.Min(Math.Max((i - low) / (high - low), 0), 1);
                var extrapolation = 1 - ramp;
                result[i] = unscaled / factor * (1 - extrapolation) + unscaled * extrapolation;
            }
        }
        return result;
    }

    /// <summary>yarn's factor on cos and sin; 1 for every other type.</summary>
    public static double AttentionFactor(ModelConfig config)
    {
        var scaling = config.RopeScaling;
        if (scaling?.Type != "yarn") return 1;
        if (scaling.AttentionFactor is { } given) return given;
        double M(double mscale) => scaling.Factor <= 1 ? 1 : 0.1 * mscale * Math.Log(scaling.Factor) + 1;
        return scaling.Mscale is > 0 or < 0 && scaling.MscaleAllDim is > 0 or < 0 ? M(scaling.Mscale.Value) / M(scaling.MscaleAllDim.Value) : M(1);
    }

    // Hugging Face's rotate_half: dimension i pairs with i + headDim/2 within each head.
    private static void RotateHalf(float[] vector, int heads, int headDim, int position, double[] frequencies, double attentionFactor)
    {
        var half = headDim / 2;
        for (var head = 0; head < heads; head++)
        {
            for (var i = 0; i < half; i++)
            {
                var angle = position * frequencies[i];
                var (cos, sin) = (Math.Cos(angle) * attentionFactor, Math.Sin(angle) * attentionFactor);
                var (a, b) = (vector[head * headDim + i], vector[head * headDim + half + i]);
                vector[head * headDim + i] = (float)(a * cos - b * sin);
                vector[head * headDim + half + i] = (float)(b * cos + a * sin);
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
