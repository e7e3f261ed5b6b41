using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Storage;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Transformer;

/// <summary>
/// A decoder-only transformer of the Llama family (Llama, Qwen2): token embedding, pre-norm blocks with
/// grouped-query attention and SwiGLU FFNs, final RMSNorm and a language-model head (optionally tied).
/// Parameter names are Hugging Face's state-dict keys, so checkpoints load by name. The parameters and activations have
/// one element type (<see cref="Dtype"/>: float32, or bfloat16/float16 as a checkpoint stores them); norms are computed in
/// float32 and logits are always float32, as transformers computes a half-precision Llama.
/// </summary>
public sealed class CausalLanguageModel : nn.Module
{
    private readonly DecoderStack _model;
    private readonly Linear? _lmHead;

    /// <param name="config">The architecture.</param>
    /// <param name="dtype">The element type of every parameter and activation; float32 by default.</param>
    public CausalLanguageModel(ModelConfig config, ScalarType? dtype = null) : base(nameof(CausalLanguageModel))
    {
        Config = config.Validate("model config");
        Dtype = dtype ?? ScalarType.Float32;
        if (Dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentOutOfRangeException(nameof(dtype), Dtype, "A model computes in float32, bfloat16 or float16.");
        _model = new DecoderStack(config, Dtype);
        register_module("model", _model);
        if (!config.TieWordEmbeddings)
        {
            _lmHead = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, dtype: Dtype);
            register_module("lm_head", _lmHead);
        }
        Rotary = new RotaryEmbedding(config.HeadDim, config.MaxPositionEmbeddings, config.RopeTheta, config.RopeScaling);
    }

    public ModelConfig Config { get; }
    /// <summary>The element type of the parameters and activations (logits are float32 whatever it is).</summary>
    public ScalarType Dtype { get; }
    public RotaryEmbedding Rotary { get; }
    public IReadOnlyList<DecoderLayer> Layers => _model.Layers;
    public Tensor EmbedTokens => _model.EmbedTokens.weight!;
    public RmsNorm Norm => _model.Norm;
    /// <summary>The output projection [vocab, hidden]: <c>lm_head.weight</c>, or the token embedding when tied.</summary>
    public Tensor LmHead => _lmHead?.weight ?? EmbedTokens;

    /// <summary>
    /// While set, every forward that records a graph marks each decoder layer's input (<see cref="GradientReadyMarker"/>),
    /// and the observer learns when the backward pass has come back through it: a data-parallel rank starts exchanging a
    /// layer's gradients while the layers below are still differentiated.
    /// </summary>
    public IGradientReadiness? GradientReadiness { get; set; }

    /// <summary>
    /// Logits [batch, tokens, vocab] for <paramref name="inputIds"/> [batch, tokens].
    /// <paramref name="attentionMask"/> [batch, tokens] (1 = token, 0 = left pad) may be null when no row is padded.
    /// With a <paramref name="cache"/> the tokens continue what the cache holds and are appended to it.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, KeyValueCache? cache = null, IFeedForwardHook? hook = null)
    {
        using var scope = NewDisposeScope();
        var hidden = Hidden(inputIds, attentionMask, cache, hook);
        var logits = F.linear(hidden, LmHead);
        return (Dtype == ScalarType.Float32 ? logits : logits.to_type(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    /// <summary>Final normalised hidden states [batch, tokens, hidden] (before the language-model head).</summary>
    public Tensor Hidden(Tensor inputIds, Tensor? attentionMask = null, KeyValueCache? cache = null, IFeedForwardHook? hook = null)
    {
        using var scope = NewDisposeScope();
        long batch = inputIds.shape[0], tokens = inputIds.shape[1];
        var device = inputIds.device;
        var valid = attentionMask?.to_type(ScalarType.Bool) ?? ones([batch, tokens], ScalarType.Bool, device: device);
        var past = cache?.Length ?? 0;
        // A real token's position counts the real tokens before it, so a left-padded row matches the unpadded prompt.
        var positions = valid.to_type(ScalarType.Int64).cumsum(1).sub(HeldScalars.One).clamp_min(0);
        if (cache is not null) positions = positions.add(cache.NextPosition.unsqueeze(1), HeldScalars.One);
        if (positions.shape[1] > 0 && past + tokens > Rotary.MaxPositions)
        {
            throw new UserInputException($"The sequence reaches {past + tokens} tokens but the model's max_position_embeddings is {Rotary.MaxPositions}; use a shorter input.");
        }
        // Dynamic scaling reads the sequence length as transformers does: the largest position + 1.
        var sequenceLength = Rotary.IsDynamic && positions.numel() > 0 ? positions.max().item<long>() + 1 : 0;
        var (cos, sin) = Rotary.Gather(positions, sequenceLength);
        // The tables are float32; a half-precision model rotates in its own type, as transformers does.
        if (Dtype != ScalarType.Float32) (cos, sin) = (cos.to_type(Dtype), sin.to_type(Dtype));

        Tensor? mask = null, windowMask = null;
        var sliding = Enumerable.Range(0, Config.NumHiddenLayers).Any(l => Config.SlidingWindowOf(l) is not null);
        if (cache is not null || attentionMask is not null || sliding)
        {
            var keyValid = cache is null ? valid : cat([cache.KeyValid.narrow(1, 0, past), valid], dim: 1);
            var queryIndex = arange(past, past + tokens, device: device).unsqueeze(1);
            var keyIndex = arange(past + tokens, device: device).unsqueeze(0);
            // A pad query attends to itself only, so no attention row is empty (which would give NaN).
            mask = ((keyIndex <= queryIndex) & keyValid.unsqueeze(1) | (keyIndex == queryIndex)).unsqueeze(1);
            // Sliding-window layers see the last `window` slots (pads included, as transformers counts them).
            if (sliding) windowMask = mask & (queryIndex - keyIndex < Config.SlidingWindow!.Value).unsqueeze(0).unsqueeze(0);
        }

        var x = _model.EmbedTokens.forward(inputIds);
        foreach (var layer in _model.Layers)
        {
            if (GradientReadiness is { } readiness && x.requires_grad)
            {
                readiness.Marked(layer.Index);
                x = GradientReadyMarker.Mark(x, layer.Index, readiness.Ready);
            }
            x = layer.Forward(x, cos, sin, Config.SlidingWindowOf(layer.Index) is null ? mask : windowMask, cache, hook);
        }
        cache?.Advance((int)tokens, valid);
        return _model.Norm.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads a Hugging Face model folder (config.json + safetensors), checked against the config, in evaluation mode, with
    /// the element type <paramref name="dtype"/> asks for (<see cref="ModelDtypes.Resolve"/>; float32 by default). Each
    /// tensor is read from its file straight into its parameter (converted on the way when the types differ, in small
    /// blocks), so loading holds the model's parameters once and no second copy of any weight.
    /// </summary>
    public static CausalLanguageModel Load(string directory, ModelDtype dtype = ModelDtype.Float32)
    {
        var weights = ModelCheckpoint.Open(directory);
        var model = new CausalLanguageModel(weights.Config, ModelDtypes.Resolve(dtype, weights.StoredDtype));
        try
        {
            weights.ReadInto(model.StateDict());
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Initialises weights for training from scratch: N(0, 0.02), residual projections scaled by 1/sqrt(2·layers), norms at 1.</summary>
    public void InitializeWeights(long seed)
    {
        using var guard = no_grad();
        var generator = new Generator((ulong)seed);
        var residualStd = 0.02 / Math.Sqrt(2.0 * Config.NumHiddenLayers);
        // Over the Hugging Face tensors (fused parameters through their parts), so that a seed gives the same weights as before fusing.
        foreach (var (name, parameter) in StateDict())
        {
            if (name.EndsWith("layernorm.weight", StringComparison.Ordinal) || name == "model.norm.weight") parameter.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
            else if (name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal)) parameter.normal_(0, residualStd, generator);
            else parameter.normal_(0, 0.02, generator);
        }
    }

    /// <summary>
    /// The Hugging Face state dict: every parameter by its checkpoint name, in checkpoint order. The fused q/k/v and gate/up
    /// parameters appear as their Hugging Face parts (views of the fused rows: writing into them writes the model).
    /// </summary>
    public Dictionary<string, Tensor> StateDict()
    {
        using var guard = no_grad();
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, parameter) in named_parameters())
        {
            var separator = name.LastIndexOf('.', name.LastIndexOf('.') - 1);
            var module = name[(separator + 1)..name.LastIndexOf('.')];
            if (module is SelfAttention.FusedName or FeedForward.FusedName)
            {
                // Layer names look like model.layers.{i}.self_attn.qkv_proj.weight; the weight comes first, so expand once.
                if (!name.EndsWith(".weight", StringComparison.Ordinal)) continue;
                var layer = Layers[int.Parse(name.Split('.')[2], System.Globalization.CultureInfo.InvariantCulture)];
                var parts = module == SelfAttention.FusedName ? layer.SelfAttn.SplitParameters() : layer.Mlp.SplitParameters();
                var prefix = name[..(separator + 1)];
                foreach (var (part, tensor) in parts) state.Add(prefix + part, tensor);
                continue;
            }
            state.Add(name, parameter);
        }
        return state;
    }

    /// <summary>Copies <paramref name="tensors"/> into the parameters by name; names and shapes must match the config.</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        using var guard = no_grad();
        foreach (var (name, parameter) in StateDict())
        {
            if (!tensors.TryGetValue(name, out var tensor))
            {
                throw new UserInputException($"{source} lacks {name}, which the model's config requires.");
            }
            if (!tensor.shape.SequenceEqual(parameter.shape))
            {
                throw new UserInputException($"{source}: {name} has shape [{string.Join(", ", tensor.shape)}] but the config expects [{string.Join(", ", parameter.shape)}].");
            }
            parameter.copy_(tensor);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Rotary.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>The <c>model.</c> part of the state dict: embeddings, blocks, final norm.</summary>
    private sealed class DecoderStack : nn.Module
    {
        public DecoderStack(ModelConfig config, ScalarType dtype) : base(nameof(DecoderStack))
        {
            EmbedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, dtype: dtype);
            Layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => new DecoderLayer(config, i, dtype))];
            Norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype);
            register_module("embed_tokens", EmbedTokens);
            register_module("layers", nn.ModuleList([.. Layers]));
            register_module("norm", Norm);
        }

        public Embedding EmbedTokens { get; }
        public DecoderLayer[] Layers { get; }
        public RmsNorm Norm { get; }
    }
}
