using Babel.Modeling.Transformer;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Text2Tree;

/// <summary>
/// A text classifier over a label tree: Babel's decoder (<see cref="CausalLanguageModel"/>: token embedding and decoder
/// layers with final norm) mean-pooled over the non-pad tokens, then a linear head. With a <see cref="CascadeAttention"/>
/// (Text2Tree) it also has a projector [hidden → hidden]: in the paper's objective the projector feeds the SSL term and
/// the logits are the linear head's alone, as in plain fine-tuning, so the tree shapes training only through the label
/// embeddings; with <c>labelLogits</c> (Babel's earlier variant) each logit also adds the label's match with its
/// cascaded embedding, proj(z)·Lᵀ/√h.
/// </summary>
public sealed class Text2TreeClassifier : nn.Module
{
    private readonly CausalLanguageModel _encoder;
    private readonly CascadeAttention? _cascade;
    private readonly Linear _head;
    private readonly Linear? _projection;
    private readonly double _scale;
    private readonly bool _labelLogits;

    public Text2TreeClassifier(CausalLanguageModel encoder, int labels, CascadeAttention? cascade, bool labelLogits = false) : base(nameof(Text2TreeClassifier))
    {
        _encoder = encoder;
        _cascade = cascade;
        _labelLogits = labelLogits && cascade is not null;
        var hidden = encoder.Config.HiddenSize;
        _scale = 1.0 / Math.Sqrt(hidden);
        register_module("encoder", encoder);
        _head = nn.Linear(hidden, labels);
        register_module("head", _head);
        if (cascade is not null)
        {
            _projection = nn.Linear(hidden, hidden, hasBias: false);
            register_module("cascade", cascade);
            register_module("projection", _projection);
        }
    }

    public CausalLanguageModel Encoder => _encoder;
    public CascadeAttention? Cascade => _cascade;

    /// <summary>Mean-pooled text representations [batch, hidden] of left-padded <paramref name="ids"/> with <paramref name="mask"/> (1 = token).</summary>
    public Tensor Encode(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var hidden = _encoder.Hidden(ids, mask);
        var weights = mask.to_type(hidden.dtype).unsqueeze(2);
        return ((hidden * weights).sum(1) / weights.sum(1).clamp_min(1)).MoveToOuterDisposeScope();
    }

    /// <summary>The label embeddings after the cascade [labels, hidden], or null for a linear head.</summary>
    public Tensor? LabelEmbeddings() => _cascade?.Labels();

    /// <summary>Logits [rows, labels] of <paramref name="representations"/>; pass <see cref="LabelEmbeddings"/> once per batch for a cascade head.</summary>
    public Tensor Classify(Tensor representations, Tensor? labelEmbeddings)
    {
        if (!_labelLogits) return _head.forward(representations);
        using var scope = NewDisposeScope();
        var labels = labelEmbeddings ?? _cascade!.Labels();
        // A linear head at the full learning rate plus the match with the cascaded label embeddings (at a tenth):
        // the tree shapes every logit without slowing the classifier down.
        return (_head.forward(representations) + _projection!.forward(representations).matmul(labels.t()) * _scale).MoveToOuterDisposeScope();
    }

    /// <summary>The SSL projector's output for <paramref name="representations"/> (a Text2Tree classifier only).</summary>
    public Tensor Project(Tensor representations) =>
        (_projection ?? throw new InvalidOperationException("Only a Text2Tree classifier has a projector.")).forward(representations);

    /// <summary>Parameters of the label tree (embeddings, cascade attention, gates), trained at a tenth of the learning rate.</summary>
    public IReadOnlyList<Parameter> LabelParameters() => _cascade is null ? [] : [.. _cascade.parameters()];

    /// <summary>All other parameters (encoder, head, projection).</summary>
    public IReadOnlyList<Parameter> TextParameters()
    {
        var label = LabelParameters().Select(p => p.Handle).ToHashSet();
        return [.. parameters().Where(p => !label.Contains(p.Handle))];
    }

    /// <summary>Every parameter by name (for checkpoints).</summary>
    public Dictionary<string, Tensor> State() => named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);

    /// <summary>Copies <paramref name="state"/> into the parameters by name.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var guard = no_grad();
        foreach (var (name, parameter) in named_parameters())
        {
            if (!state.TryGetValue(name, out var value) || !value.shape.SequenceEqual(parameter.shape))
            {
                throw new Storage.UserInputException($"{source} does not match this classifier ({name}); delete it to train afresh.");
            }
            parameter.copy_(value);
        }
    }

    /// <summary>
    /// Mean token embedding of each text (label descriptions) [texts, hidden], for initialising label embeddings: as it is
    /// (the authors'), or with <paramref name="rescale"/> normalised to Babel's earlier scale 0.02·√h.
    /// </summary>
    public static Tensor MeanTokenEmbeddings(CausalLanguageModel encoder, IReadOnlyList<int[]> tokens, bool rescale = false)
    {
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        var table = encoder.EmbedTokens;
        var rows = tokens.Select(t => t.Length == 0
            ? zeros(table.shape[1])
            : table.index_select(0, tensor(t.Select(i => (long)i).ToArray())).mean([0])).ToList();
        var means = stack(rows);
        return (rescale ? F.normalize(means, p: 2, dim: 1).mul(Math.Sqrt(table.shape[1]) * 0.02) : means).MoveToOuterDisposeScope();
    }
}
