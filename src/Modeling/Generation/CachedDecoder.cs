using Babel.Modeling.Transformer;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Babel.Modeling.Generation;

/// <summary>
/// Decodes one token per row per step against a <see cref="KeyValueCache"/>, reading the model's own parameters in place
/// (no copy: a large checkpoint decodes in the memory its weights take): the fused q/k/v and gate/up rows, each residual
/// update one <c>addmm</c>, rotary embedding as x·cos + swap-halves(x)·(±sin) over q and k at once, and each query-head group
/// attending to its shared key/value head without copies. A bfloat16 or float16 model decodes in its own type, with each
/// RMSNorm computed in float32 and rounded before its gain (as the full forward does) and float32 logits. A float32 step of
/// a single row without a hook runs in managed SIMD code (<see cref="SingleRowStep"/>) over the same weights.
/// </summary>
public sealed unsafe class CachedDecoder : IDisposable
{
    private readonly LayerWeights[] _layers;
    private readonly Tensor _embedding;
    private readonly Tensor _head;
    private readonly Tensor _finalGain;
    private readonly Tensor _rotaryTable;
    private readonly Tensor _slot;
    private readonly int _heads, _keyValueHeads, _headDim, _queryWidth, _keyWidth;
    private readonly int[] _intermediate;
    // Per layer: the sliding window it attends within, or null for the whole prefix.
    private readonly int?[] _window;
    private readonly RotaryEmbedding _rotary;
    // RMSNorm's mean(x²) + ε as one addmm: x² · (1/d) + ε.
    private readonly Tensor _meanColumn;
    private readonly Tensor _epsilon;
    // Scalars are native objects in TorchSharp: made once here, not per call in the decoding loop.
    private readonly Scalar _one = 1.ToScalar();
    private readonly ScalarType _dtype;
    private readonly int _vocab;
    // The managed single-row step, for float32 models with static RoPE tables; null otherwise.
    private readonly SingleRowStep? _row;
    private readonly SingleRowStep.Layer[] _rowLayers;
    private KeyValueCache? _rowCache;

    public CachedDecoder(CausalLanguageModel model)
    {
        var config = model.Config;
        (_heads, _keyValueHeads, _headDim) = (config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim);
        (_queryWidth, _keyWidth) = (_heads * _headDim, _keyValueHeads * _headDim);
        _intermediate = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(config.IntermediateSizeOf)];
        _window = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(config.SlidingWindowOf)];
        _rotary = model.Rotary;
        _dtype = model.Dtype;
        _meanColumn = full(config.HiddenSize, 1, 1.0 / config.HiddenSize);
        _epsilon = full(1, 1, config.RmsNormEps);
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        _layers = [.. model.Layers.Select(layer => Weights(layer).MoveToOuterDisposeScope())];
        _embedding = InPlace(model.EmbedTokens).MoveToOuterDisposeScope();
        _head = InPlace(model.LmHead).MoveToOuterDisposeScope();
        _finalGain = InPlace(model.Norm.Weight).MoveToOuterDisposeScope();
        _vocab = config.VocabSize;
        // Per position: cos and the signed sin, tiled over the q heads then the k heads, side by side.
        _rotaryTable = RotaryRows(model.Rotary.Cos, model.Rotary.Sin).to_type(_dtype).contiguous().MoveToOuterDisposeScope();
        _slot = zeros(1, ScalarType.Int64).MoveToOuterDisposeScope();
        // The managed step needs each weight's address, which TorchSharp gives as a span: below 2 GB, on the CPU.
        var addressable = _dtype == ScalarType.Float32 && !_rotary.IsDynamic && _embedding.device_type == DeviceType.CPU
            && new[] { _embedding, _head, _finalGain, _rotaryTable }.Concat(_layers.SelectMany(w => w.Tensors)).All(t => t.is_contiguous() && t.NumberOfElements * t.ElementSize < int.MaxValue);
        _rowLayers = !addressable ? [] : [.. _layers.Select(w => new SingleRowStep.Layer(Pointer(w.InputGain), Pointer(w.Qkv), Pointer(w.QkvBias), Pointer(w.Output),
            Pointer(w.PostAttentionGain), Pointer(w.GateUp), Pointer(w.GateUpBias), Pointer(w.Down), Pointer(w.DownBias)))];
        if (addressable)
        {
            _row = new SingleRowStep(config.HiddenSize, _heads, _keyValueHeads, _headDim, _intermediate, _window, _vocab, config.RmsNormEps, Runtime.TorchRuntime.Threads);
        }
    }

    /// <summary>The address of a contiguous CPU tensor's first element (TorchSharp exposes its memory as a span).</summary>
    private static float* Pointer(Tensor? tensor) => tensor is null ? null : (float*)Address(tensor);

    private static void* Address(Tensor tensor) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(tensor.bytes));

    /// <summary>A parameter as a tensor sharing its storage (a copy only if it is not contiguous, which a loaded model never is).</summary>
    private static Tensor InPlace(Tensor parameter) => parameter.detach().contiguous();

    private static LayerWeights Weights(DecoderLayer layer)
    {
        var (attention, mlp) = (layer.SelfAttn, layer.Mlp);
        return new LayerWeights(
            InPlace(layer.InputLayernorm.Weight),
            InPlace(attention.QkvProj.weight!),
            attention.QkvProj.bias is { } qkvBias ? InPlace(qkvBias) : null,
            InPlace(attention.OProj.weight!),
            InPlace(layer.PostAttentionLayernorm.Weight),
            InPlace(mlp.GateUpProj.weight!),
            mlp.GateUpProj.bias is { } gateUpBias ? InPlace(gateUpBias) : null,
            InPlace(mlp.DownProj.weight!),
            mlp.DownProj.bias is { } downBias ? InPlace(downBias) : null);
    }

    /// <summary>
    /// [positions, 2 · (q and k widths)]: cos, then sin with each head's first half negated, tiled over the q heads then the
    /// k heads, so that rotate_half(x)·sin = swap-halves(x)·signed sin.
    /// </summary>
    private Tensor RotaryRows(Tensor cos, Tensor sin)
    {
        var half = _headDim / 2;
        var signedSin = cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], dim: -1);
        var heads = _heads + _keyValueHeads;
        return cat([cos.repeat(1, heads), signedSin.repeat(1, heads)], dim: 1);
    }

    /// <summary>
    /// Feeds <paramref name="tokens"/> [batch] (int64) as the next slot of <paramref name="cache"/> and returns logits [batch, vocab].
    /// </summary>
    public Tensor Step(Tensor tokens, KeyValueCache cache, IFeedForwardHook? hook = null)
    {
        using var scope = NewDisposeScope();
        var batch = tokens.shape[0];
        var slot = cache.Length;
        if (slot >= cache.Capacity) throw new InvalidOperationException($"The key/value cache holds {cache.Capacity} tokens and is full.");
        if (_row is not null && batch == 1 && hook is null && !cache.HasPadding) return RowStep(tokens, cache, slot);
        var span = slot + 1;
        var rotaryWidth = _queryWidth + _keyWidth;
        var (cos, sin) = Rotary(cache.NextPosition, rotaryWidth);
        _slot.fill_(slot);
        var keyMask = cache.HasPadding ? cache.KeyValid.narrow(1, 0, span).view(batch, 1, 1, span) : null;
        var groups = _heads / _keyValueHeads;

        var x = _embedding.index_select(0, tokens);
        for (var i = 0; i < _layers.Length; i++)
        {
            var w = _layers[i];
            var normed = Normalize(x, w.InputGain);
            var projected = w.QkvBias is null ? normed.mm(w.Qkv.t()) : w.QkvBias.addmm(normed, w.Qkv.t());
            var queryKey = projected.narrow(1, 0, rotaryWidth);
            var value = projected.narrow(1, rotaryWidth, _keyWidth);
            // Each head's halves swapped, [batch, q and k heads, 2, half] flipped on the halves' axis.
            var swapped = queryKey.reshape(batch, _heads + _keyValueHeads, 2, _headDim / 2).flip(2).reshape(batch, rotaryWidth);
            var roped = (queryKey * cos).addcmul_(swapped, sin, _one);
            var query = roped.narrow(1, 0, _queryWidth).view(batch, _keyValueHeads, groups, _headDim);
            var keys = cache.Keys[i].index_copy_(2, _slot, roped.narrow(1, _queryWidth, _keyWidth).view(batch, _keyValueHeads, 1, _headDim));
            var values = cache.Values[i].index_copy_(2, _slot, value.view(batch, _keyValueHeads, 1, _headDim));
            // A sliding-window layer attends to the last `window` slots only.
            var start = _window[i] is { } window ? Math.Max(0, span - window) : 0;
            var layerMask = keyMask is null || start == 0 ? keyMask : keyMask.narrow(3, start, span - start);
            var attended = nn.functional.scaled_dot_product_attention(query, keys.narrow(2, start, span - start), values.narrow(2, start, span - start), attn_mask: layerMask);
            x = x.addmm(attended.view(batch, _queryWidth), w.Output.t());

            var normedFfn = Normalize(x, w.PostAttentionGain);
            var gateUp = w.GateUpBias is null ? normedFfn.mm(w.GateUp.t()) : w.GateUpBias.addmm(normedFfn, w.GateUp.t());
            var width = _intermediate[i];
            var gate = gateUp.narrow(1, 0, width);
            var intermediate = nn.functional.silu(gate).mul_(gateUp.narrow(1, width, width));
            if (hook is not null) intermediate = hook.OnIntermediate(i, gate.unsqueeze(1), intermediate.unsqueeze(1)).squeeze(1);
            x = x.addmm(intermediate, w.Down.t());
            if (w.DownBias is not null) x = x.add_(w.DownBias);
        }
        var logits = Normalize(x, _finalGain).mm(_head.t());
        if (_dtype != ScalarType.Float32) logits = logits.to_type(ScalarType.Float32);
        cache.NextPosition.add_(_one);
        cache.Extend();
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>The single-row float32 step in managed code: the same computation as the torch path, reading weights and cache in place.</summary>
    private Tensor RowStep(Tensor tokens, KeyValueCache cache, int slot)
    {
        if (!ReferenceEquals(cache, _rowCache))
        {
            if (cache.Keys.Concat(cache.Values).Any(t => t.dtype != ScalarType.Float32 || t.device_type != DeviceType.CPU || !t.is_contiguous() || t.shape[0] != 1))
            {
                throw new InvalidOperationException("A float32 model decodes into a contiguous float32 CPU cache of one row.");
            }
            for (var i = 0; i < _rowLayers.Length; i++)
            {
                _rowLayers[i].Keys = Pointer(cache.Keys[i]);
                _rowLayers[i].Values = Pointer(cache.Values[i]);
            }
            _rowCache = cache;
        }
        using var ids = tokens.to(ScalarType.Int64).contiguous();
        var token = *(long*)Address(ids);
        var positionSlot = (long*)Address(cache.NextPosition);
        var position = *positionSlot;
        if (token < 0 || token >= _vocab) throw new ArgumentOutOfRangeException(nameof(tokens), token, $"A token id must lie in [0, {_vocab}).");
        if (position >= _rotaryTable.shape[0]) throw new InvalidOperationException($"Position {position} is beyond the model's {_rotaryTable.shape[0]} positions.");
        var logits = empty(1, _vocab);
        _row!.Run(token, position, slot, cache.Capacity, Pointer(_embedding), _rowLayers, Pointer(_rotaryTable), Pointer(_finalGain), Pointer(_head), Pointer(logits));
        *positionSlot = position + 1;
        cache.Extend();
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Cos and sin [batch, q and k widths] for each row's next position, tiled over the q heads then the k heads.</summary>
    private (Tensor Cos, Tensor Sin) Rotary(Tensor positions, int rotaryWidth)
    {
        if (_rotary.IsDynamic)
        {
            // Dynamic scaling depends on the sequence length (largest position + 1), as in the full forward.
            var length = positions.max().item<long>() + 1;
            if (length > _rotary.OriginalContext)
            {
                var (c, s) = _rotary.Gather(positions.unsqueeze(1), length);
                var rows = RotaryRows(c.view(-1, _headDim), s.view(-1, _headDim)).to_type(_dtype);
                return (rows.narrow(1, 0, rotaryWidth), rows.narrow(1, rotaryWidth, rotaryWidth));
            }
        }
        var rotary = _rotaryTable.index_select(0, positions);
        return (rotary.narrow(1, 0, rotaryWidth), rotary.narrow(1, rotaryWidth, rotaryWidth));
    }

    /// <summary>RMSNorm as the model computes it: in float32, rounded to the model's type, then times the gain.</summary>
    private Tensor Normalize(Tensor x, Tensor gain)
    {
        if (_dtype == ScalarType.Float32) return (x * _epsilon.addmm(x.square(), _meanColumn).rsqrt_()).mul_(gain);
        var wide = x.to_type(ScalarType.Float32);
        return (wide * _epsilon.addmm(wide.square(), _meanColumn).rsqrt_()).to_type(_dtype).mul_(gain);
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
        _embedding.Dispose();
        _head.Dispose();
        _finalGain.Dispose();
        _rotaryTable.Dispose();
        _slot.Dispose();
        _epsilon.Dispose();
        _meanColumn.Dispose();
        _one.Dispose();
    }

    /// <summary>One layer's parameters, sharing the model's storage.</summary>
    private sealed record LayerWeights(Tensor InputGain, Tensor Qkv, Tensor? QkvBias, Tensor Output, Tensor PostAttentionGain, Tensor GateUp, Tensor? GateUpBias,
        Tensor Down, Tensor? DownBias) : IDisposable
    {
        public IEnumerable<Tensor> Tensors => new[] { InputGain, Qkv, QkvBias, Output, PostAttentionGain, GateUp, GateUpBias, Down, DownBias }.OfType<Tensor>();

        public LayerWeights MoveToOuterDisposeScope()
        {
            foreach (var tensor in Tensors) tensor.MoveToOuterDisposeScope();
            return this;
        }

        public void Dispose()
        {
            foreach (var tensor in Tensors) tensor.Dispose();
        }
    }
}
