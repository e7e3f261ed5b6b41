using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Transformer;

/// <summary>
/// Grouped-query causal self-attention with rotary embeddings; q/k/v bias optional (Qwen2). q_proj, k_proj and v_proj are the
/// row blocks of one fused <c>qkv_proj</c> (one matmul); the state dict splits them again.
/// </summary>
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
        long queries = heads * headDim, keyValues = keyValueHeads * headDim;
        QkvProj = nn.Linear(hiddenSize, queries + 2 * keyValues, hasBias: qkvBias, dtype: dtype);
        QProj = new FusedProjection(QkvProj, 0, queries);
        KProj = new FusedProjection(QkvProj, queries, keyValues);
        VProj = new FusedProjection(QkvProj, queries + keyValues, keyValues);
        OProj = nn.Linear(heads * headDim, hiddenSize, hasBias: false, dtype: dtype);
        register_module(FusedName, QkvProj);
        register_module("o_proj", OProj);
    }

    /// <summary>The fused module's name in <c>named_parameters</c>; <see cref="CausalLanguageModel.StateDict"/> splits it into q_proj, k_proj and v_proj.</summary>
    public const string FusedName = "qkv_proj";

    /// <summary>[q_proj; k_proj; v_proj] rows: [(heads + 2 · key/value heads) · head_dim, hidden].</summary>
    public Linear QkvProj { get; }
    public FusedProjection QProj { get; }
    public FusedProjection KProj { get; }
    public FusedProjection VProj { get; }

    /// <summary>The Hugging Face names and views of the fused module's parameters, in checkpoint order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> SplitParameters()
    {
        foreach (var (name, projection) in new[] { ("q_proj", QProj), ("k_proj", KProj), ("v_proj", VProj) })
        {
            yield return (name + ".weight", projection.weight);
            if (projection.bias is { } b) yield return (name + ".bias", b);
        }
    }
    public Linear OProj { get; }

    /// <summary>
    /// <paramref name="hidden"/> [batch, tokens, hidden] (already normalised) → [batch, tokens, hidden].
    /// <paramref name="mask"/> is null for a plain causal pass, else a boolean [batch, 1, tokens, keys] (true = attend).
    /// With a <paramref name="cache"/>, keys and values are written at its current length and attention spans the whole prefix.
    /// </summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache, int layer)
    {
        long batch = hidden.shape[0], tokens = hidden.shape[1];
        var qkv = QkvProj.forward(hidden);
        long queries = _heads * _headDim, keyValues = _keyValueHeads * _headDim;
        var q = RotaryEmbedding.Apply(qkv.narrow(-1, 0, queries).view(batch, tokens, _heads, _headDim).transpose(1, 2), cos, sin);
        var k = RotaryEmbedding.Apply(qkv.narrow(-1, queries, keyValues).view(batch, tokens, _keyValueHeads, _headDim).transpose(1, 2), cos, sin);
        var v = qkv.narrow(-1, queries + keyValues, keyValues).view(batch, tokens, _keyValueHeads, _headDim).transpose(1, 2);
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
