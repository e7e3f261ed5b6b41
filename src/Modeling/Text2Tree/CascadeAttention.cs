using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Babel.Modeling.Text2Tree;

/// <summary>A learnable on/off gate: sigmoid of a logit, hardened at 0.5 in the forward pass, with the sigmoid's gradient (straight-through estimator).</summary>
public static class StraightThroughGate
{
    /// <summary>1 where sigmoid(<paramref name="logits"/>) ≥ 0.5, else 0; the backward pass sees d sigmoid / d logit.</summary>
    public static Tensor Apply(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var soft = logits.sigmoid();
        var hard = soft.ge(0.5).to_type(soft.dtype);
        // soft − soft.detach() is exactly 0 forward, so the forward value is exactly the hard gate.
        return (hard + (soft - soft.detach())).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Text2Tree's label-tree embedding: one attention layer per tree level, applied from the top level down so each level
/// sees its already-updated parents. A node of level ℓ attends over fixed edges (itself and its parent) and over its
/// siblings through a learnable straight-through gate per node; scaled dot-product attention is masked to those edges,
/// followed by a residual and LayerNorm. Nodes of other levels pass through unchanged.
/// </summary>
public sealed class CascadeAttention : nn.Module
{
    private readonly LabelTree _tree;
    private readonly Parameter _nodeEmbeddings;
    private readonly List<Level> _levels = [];
    private readonly Tensor _leafNodes;

    public CascadeAttention(LabelTree tree, int hidden, Tensor? initialEmbeddings = null) : base(nameof(CascadeAttention))
    {
        _tree = tree;
        Hidden = hidden;
        var initial = initialEmbeddings is null ? randn(tree.NodeCount, hidden) * 0.02 : initialEmbeddings.detach().clone();
        _nodeEmbeddings = new Parameter(initial);
        register_parameter("node_embeddings", _nodeEmbeddings);
        var layers = new List<nn.Module>();
        for (var level = 1; level <= tree.Levels; level++)
        {
            var layer = new Level(tree, level, hidden);
            _levels.Add(layer);
            layers.Add(layer);
        }
        register_module("levels", nn.ModuleList([.. layers]));
        _leafNodes = tensor(tree.LeafNodes.Select(i => (long)i).ToArray());
    }

    public int Hidden { get; }

    /// <summary>The node embeddings before the cascade [nodes, hidden].</summary>
    public Parameter NodeEmbeddings => _nodeEmbeddings;

    /// <summary>Gate logits of every level (one per node of the level), for inspection and tests.</summary>
    public IReadOnlyList<Parameter> GateLogits => [.. _levels.Select(l => l.Gates)];

    /// <summary>Node states after the cascade [nodes, hidden].</summary>
    public Tensor Nodes()
    {
        using var scope = NewDisposeScope();
        Tensor x = _nodeEmbeddings;
        foreach (var level in _levels) x = level.Forward(x);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Embeddings of the labels (leaves) after the cascade [labels, hidden].</summary>
    public Tensor Labels()
    {
        using var scope = NewDisposeScope();
        return Nodes().index_select(0, _leafNodes).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _leafNodes.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>One level's masked attention.</summary>
    private sealed class Level : nn.Module
    {
        private readonly Linear _query;
        private readonly Linear _key;
        private readonly Linear _value;
        private readonly LayerNorm _norm;
        private readonly Tensor _rows;
        private readonly Tensor _fixed;
        private readonly Tensor _siblings;
        private readonly Tensor _allowed;
        private readonly double _scale;

        public Level(LabelTree tree, int level, int hidden) : base($"level{level}")
        {
            _query = nn.Linear(hidden, hidden, hasBias: false);
            _key = nn.Linear(hidden, hidden, hasBias: false);
            _value = nn.Linear(hidden, hidden, hasBias: false);
            _norm = nn.LayerNorm(hidden);
            var rows = tree.NodesAt(level);
            // Logit 0 → sigmoid 0.5 → gate open: siblings start connected and the model learns to cut edges.
            Gates = new Parameter(zeros(rows.Length));
            register_module("q_proj", _query);
            register_module("k_proj", _key);
            register_module("v_proj", _value);
            register_module("norm", _norm);
            register_parameter("gate_logits", Gates);
            _rows = tensor(rows.Select(i => (long)i).ToArray());
            _fixed = tensor(tree.FixedEdges(level));
            _siblings = tensor(tree.SiblingEdges(level));
            _allowed = (_fixed + _siblings).gt(0);
            _scale = 1.0 / Math.Sqrt(hidden);
        }

        public Parameter Gates { get; }

        public Tensor Forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var own = x.index_select(0, _rows);
            var scores = _query.forward(own).matmul(_key.forward(x).t()) * _scale;
            // Edge weights: 1 on fixed edges, the hard gate (with straight-through gradient) on sibling edges.
            var weights = _fixed + _siblings * StraightThroughGate.Apply(Gates).unsqueeze(1);
            var masked = scores.masked_fill(_allowed.logical_not(), double.NegativeInfinity);
            var exponent = (masked - masked.amax([1], keepdim: true).detach()).exp() * weights;
            var attention = exponent / exponent.sum(1, keepdim: true);
            var updated = _norm.forward(own + attention.matmul(_value.forward(x)));
            return x.index_copy(0, _rows, updated).MoveToOuterDisposeScope();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _rows.Dispose();
                _fixed.Dispose();
                _siblings.Dispose();
                _allowed.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
