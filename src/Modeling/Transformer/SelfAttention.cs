using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Transformer;

/// <summary>Grouped-query causal self-attention with rotary embeddings; q/k/v bias optional (Qwen2).</summary>
public sealed class SelfAttention : nn.Module
{
    private readonly int _heads;
    private readonly int _keyValueHeads;
    private readonly int _headDim;

    public SelfAttention(int hiddenSize, int heads, int keyValueHeads, int headDim, bool qkvBias, ScalarType? dtype = null) : base(nameof(SelfAttention))
    {
        _heads = heads;
        _keyValueHeads = keyValueHeads;
        _headDim = headDim;
        QProj = nn.Linear(hiddenSize, heads * headDim, hasBias: qkvBias, dtype: dtype);
        KProj = nn.Linear(hiddenSize, keyValueHeads * headDim, hasBias: qkvBias, dtype: dtype);
        VProj = nn.Linear(hiddenSize, keyValueHeads * headDim, hasBias: qkvBias, dtype: dtype);
        OProj = nn.Linear(heads * headDim, hiddenSize, hasBias: false, dtype: dtype);
        register_module("q_proj", QProj);
        register_module("k_proj", KProj);
        register_module("v_proj", VProj);
        register_module("o_proj", OProj);
    }

    public Linear QProj { get; }
    public Linear KProj { get; }
    public Linear VProj { get; }
    public Linear OProj { get; }

    /// <summary>
    /// <paramref name="hidden"/> [batch, tokens, hidden] (already normalised) → [batch, tokens, hidden].
    /// <paramref name="mask"/> is null for a plain causal pass, else a boolean [batch, 1, tokens, keys] (true = attend).
    /// With a <paramref name="cache"/>, keys and values are written at its current length and attention spans the whole prefix.
    /// </summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache, int layer)
    {
        long batch = hidden.shape[0], tokens = hidden.shape[1];
        var q = RotaryEmbedding.Apply(QProj.forward(hidden).view(batch, tokens, _heads, _headDim).transpose(1, 2), cos, sin);
        var k = RotaryEmbedding.Apply(KProj.forward(hidden).view(batch, tokens, _keyValueHeads, _headDim).transpose(1, 2), cos, sin);
        var v = VProj.forward(hidden).view(batch, tokens, _keyValueHeads, _headDim).transpose(1, 2);
        if (cache is not null)
        {
            var end = cache.Length + (int)tokens;
            cache.Keys[layer].narrow(2, cache.Length, tokens).copy_(k);
            cache.Values[layer].narrow(2, cache.Length, tokens).copy_(v);
            k = cache.Keys[layer].narrow(2, 0, end);
            v = cache.Values[layer].narrow(2, 0, end);
        }
        var groups = _heads / _keyValueHeads;
        if (groups > 1)
        {
            // TorchSharp's SDPA has no GQA flag: share each key/value head with its group of query heads.
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        var attended = mask is null
            ? F.scaled_dot_product_attention(q, k, v, is_casual: true)
            : F.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        return OProj.forward(attended.transpose(1, 2).reshape(batch, tokens, _heads * _headDim));
    }
}
