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

/// <summary>The forms of the cascade attention (<c>--cascade</c>).</summary>
public static class Text2TreeCascades
{
    /// <summary>
    /// As the authors' code computes it: each sibling edge i→j has its own straight-through gate on the bilinear logit
    /// q_i·C·k_j + b; attention softmax(q·kᵀ/√h − 10⁴·(1 − mask)) over the fixed edges (self, parent) and the open sibling
    /// edges; the level's nodes are replaced by the attention output (no residual); then LayerNorm over every node, so all
    /// levels share one scale. Random label embeddings are Kaiming-uniform (±1/√h); description embeddings are the plain
    /// mean token embedding.
    /// </summary>
    public const string Paper = "paper";

    /// <summary>
    /// Babel's earlier form: one learnable gate per node for all its sibling edges, a residual with LayerNorm over the
    /// level's nodes only, other levels unchanged, label embeddings at 0.02 scale.
    /// </summary>
    public const string Babel = "babel";

    public static IReadOnlyList<string> All { get; } = [Paper, Babel];
}

/// <summary>
/// Text2Tree's label-tree embedding: one attention layer per tree level, applied from the top level down so each level
/// sees its already-updated parents. A node of level ℓ attends over fixed edges (itself and its parent) and over its
/// siblings through learnable straight-through gates; the form (<see cref="Text2TreeCascades"/>) decides whether a gate
/// is per edge or per node and how the level's output is normalised.
/// </summary>
public sealed class CascadeAttention : nn.Module
{
    private readonly LabelTree _tree;
    private readonly Parameter _nodeEmbeddings;
    private readonly List<Level> _levels = [];
    private readonly Tensor _leafNodes;

    public CascadeAttention(LabelTree tree, int hidden, Tensor? initialEmbeddings = null, string form = Text2TreeCascades.Paper) : base(nameof(CascadeAttention))
    {
        if (!Text2TreeCascades.All.Contains(form)) throw new ArgumentException($"Unknown cascade form '{form}'.", nameof(form));
        _tree = tree;
        Hidden = hidden;
        Form = form;
        var initial = initialEmbeddings is not null ? initialEmbeddings.detach().clone()
            : form == Text2TreeCascades.Paper ? (rand(tree.NodeCount, hidden) * 2 - 1) / Math.Sqrt(hidden)
            : randn(tree.NodeCount, hidden) * 0.02;
        _nodeEmbeddings = new Parameter(initial);
        register_parameter("node_embeddings", _nodeEmbeddings);
        var layers = new List<nn.Module>();
        for (var level = 1; level <= tree.Levels; level++)
        {
            var layer = new Level(tree, level, hidden, form == Text2TreeCascades.Paper);
            _levels.Add(layer);
            layers.Add(layer);
        }
        register_module("levels", nn.ModuleList([.. layers]));
        _leafNodes = tensor(tree.LeafNodes.Select(i => (long)i).ToArray());
    }

    public int Hidden { get; }

    /// <summary>The form (<see cref="Text2TreeCascades"/>).</summary>
    public string Form { get; }

    /// <summary>The node embeddings before the cascade [nodes, hidden].</summary>
    public Parameter NodeEmbeddings => _nodeEmbeddings;

    /// <summary>
    /// Per level, the parameter that opens or closes sibling edges, for inspection and tests: the bilinear gate's bias
    /// (the paper's form) or one logit per node of the level (Babel's).
    /// </summary>
    public IReadOnlyList<Parameter> GateLogits => [.. _levels.Select(l => l.Gates)];

    /// <summary>Per level, the bilinear form C of the paper's per-edge gates (q_i·C·k_j + b); empty in Babel's form.</summary>
    public IReadOnlyList<Parameter> Connections => [.. _levels.Select(l => l.Connection).OfType<Parameter>()];

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
        // The authors' additive mask: a masked score is lowered by this much before the softmax.
        private const double MaskPenalty = 1e4;
        private readonly bool _paper;
        private readonly Linear _query;
        private readonly Linear _key;
        private readonly Linear _value;
        private readonly LayerNorm _norm;
        private readonly Tensor _rows;
        private readonly Tensor _fixed;
        private readonly Tensor _siblings;
        private readonly Tensor _allowed;
        private readonly double _scale;

        public Level(LabelTree tree, int level, int hidden, bool paper) : base($"level{level}")
        {
            _paper = paper;
            _query = nn.Linear(hidden, hidden, hasBias: paper);
            _key = nn.Linear(hidden, hidden, hasBias: paper);
            _value = nn.Linear(hidden, hidden, hasBias: paper);
            _norm = nn.LayerNorm(hidden);
            var rows = tree.NodesAt(level);
            if (paper)
            {
                // The authors' initialisation: C Kaiming-uniform (a = √5, i.e. ±1/√h), bias 0.01 (edges start open).
                Connection = new Parameter((rand(hidden, hidden) * 2 - 1) / Math.Sqrt(hidden));
                Gates = new Parameter(full(1, 0.01));
                register_parameter("connection", Connection);
            }
            else
            {
                // Logit 0 → sigmoid 0.5 → gate open: siblings start connected and the model learns to cut edges.
                Gates = new Parameter(zeros(rows.Length));
            }
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
        public Parameter? Connection { get; }

        public Tensor Forward(Tensor x) => _paper ? PaperForward(x) : BabelForward(x);

        private Tensor PaperForward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var query = _query.forward(x.index_select(0, _rows));
            var key = _key.forward(x);
            var scores = query.matmul(key.t()) * _scale;
            // Each sibling edge's own gate, hard in the forward pass, with the sigmoid's gradient.
            var gates = StraightThroughGate.Apply(query.matmul(Connection!).matmul(key.t()) + Gates);
            var mask = _fixed + _siblings * gates;
            var attention = (scores - (1 - mask) * MaskPenalty).softmax(1);
            var updated = attention.matmul(_value.forward(x));
            return _norm.forward(x.index_copy(0, _rows, updated)).MoveToOuterDisposeScope();
        }

        private Tensor BabelForward(Tensor x)
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
