using Babel.Modeling.Runtime;
using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>One pre-norm decoder block: x + attention(norm(x)), then + FFN(norm(x)).</summary>
public sealed class DecoderLayer : nn.Module
{
    public DecoderLayer(Checkpoints.ModelConfig config, int index, ScalarType? dtype = null) : base(nameof(DecoderLayer))
    {
        Index = index;
        SelfAttn = new SelfAttention(config.HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.AttentionBias, dtype);
        Mlp = new FeedForward(config.HiddenSize, config.IntermediateSizeOf(index), config.MlpBias, dtype);
        InputLayernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype);
        PostAttentionLayernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype);
        register_module("self_attn", SelfAttn);
        register_module("mlp", Mlp);
        register_module("input_layernorm", InputLayernorm);
        register_module("post_attention_layernorm", PostAttentionLayernorm);
    }

    public int Index { get; }
    public SelfAttention SelfAttn { get; }
    public FeedForward Mlp { get; }
    public RmsNorm InputLayernorm { get; }
    public RmsNorm PostAttentionLayernorm { get; }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache, IFeedForwardHook? hook)
    {
        using var scope = NewDisposeScope();
        // Held alphas: see HeldScalars.
        var afterAttention = x.add(SelfAttn.Forward(InputLayernorm.forward(x), cos, sin, mask, cache, Index), HeldScalars.One);
        return afterAttention.add(Mlp.Forward(PostAttentionLayernorm.forward(afterAttention), hook, Index), HeldScalars.One).MoveToOuterDisposeScope();
    }
}
