using Babel.Storage;
using Babel.Storage.Icpc;
using static TorchSharp.torch;

namespace Babel.Modeling.Text2Tree;

/// <summary>
/// The label hierarchy: a root (node 0), inner nodes (ICPC-2 chapter and component, ICD-10 chapter and category,
/// or any path prefix) and one leaf per label. A node is identified by its path prefix joined with <c>/</c>, so equal
/// segment names under different parents stay distinct. Depth 0 is the root; leaves may sit at different depths.
/// </summary>
public sealed class LabelTree
{
    private readonly Dictionary<string, int> _labelIndex;

    private LabelTree(List<string> nodes, List<int> parents, List<string> descriptions, List<int> leafNodes, List<string> codes)
    {
        NodeIds = nodes;
        Parent = [.. parents];
        Descriptions = descriptions;
        LeafNodes = [.. leafNodes];
        Codes = codes;
        Depth = new int[nodes.Count];
        for (var i = 1; i < nodes.Count; i++) Depth[i] = Depth[Parent[i]] + 1;
        Levels = Depth.Max();
        _labelIndex = codes.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i, StringComparer.Ordinal);
    }

    /// <summary>Node ids (path prefixes); index 0 is the root, whose id is empty.</summary>
    public IReadOnlyList<string> NodeIds { get; }

    /// <summary>Parent node of every node; the root's is -1.</summary>
    public int[] Parent { get; }

    /// <summary>Depth of every node (root 0).</summary>
    public int[] Depth { get; }

    /// <summary>Number of levels below the root (the deepest leaf's depth).</summary>
    public int Levels { get; }

    /// <summary>Text describing every node, used to initialise its embedding.</summary>
    public IReadOnlyList<string> Descriptions { get; }

    /// <summary>Node index of every label, in label order.</summary>
    public int[] LeafNodes { get; }

    /// <summary>The label codes, in label order (the classifier's output order).</summary>
    public IReadOnlyList<string> Codes { get; }

    public int NodeCount => NodeIds.Count;
    public int LabelCount => Codes.Count;

    /// <summary>Label index of <paramref name="code"/>; a code outside the tree is a user error.</summary>
    public int LabelIndex(string code) => _labelIndex.TryGetValue(code, out var index)
        ? index
        : throw new UserInputException($"label '{code}' is not in the label tree; add it to labels.json (or the tree file) or correct the record.");

    /// <summary>Builds the tree of a <c>labels.json</c> label set.</summary>
    public static LabelTree FromLabelSet(LabelSet labels) =>
        FromPaths(labels.Labels.Select(l => (l.Code, l.Description, (IReadOnlyList<string>)l.Path)), labels.Nodes);

    /// <summary>Builds the tree from each label's path (root excluded, ending in the code); inner descriptions by segment name.</summary>
    public static LabelTree FromPaths(IEnumerable<(string Code, string Description, IReadOnlyList<string> Path)> labels, IReadOnlyDictionary<string, string>? innerDescriptions = null)
    {
        var nodes = new List<string> { "" };
        var parents = new List<int> { -1 };
        var descriptions = new List<string> { "root" };
        var index = new Dictionary<string, int>(StringComparer.Ordinal) { [""] = 0 };
        var leafNodes = new List<int>();
        var codes = new List<string>();
        foreach (var (code, description, path) in labels)
        {
            if (path.Count == 0 || path[^1] != code)
            {
                throw new UserInputException($"the path of label '{code}' does not end in the code; give each label its full path ending in the code.");
            }
            var parent = 0;
            var prefix = "";
            for (var level = 0; level < path.Count; level++)
            {
                prefix = level == 0 ? path[0] : prefix + "/" + path[level];
                var isLeaf = level == path.Count - 1;
                if (index.TryGetValue(prefix, out var existing))
                {
                    if (isLeaf) throw new UserInputException($"label '{code}' is listed twice or is also an inner node of the tree; list each code once at a leaf.");
                    if (leafNodes.Contains(existing)) throw new UserInputException($"'{prefix}' is both a label and an inner node; give the label its own leaf path.");
                    parent = existing;
                    continue;
                }
                var node = nodes.Count;
                nodes.Add(prefix);
                parents.Add(parent);
                descriptions.Add(isLeaf ? description : innerDescriptions?.GetValueOrDefault(path[level]) ?? path[level]);
                index[prefix] = node;
                parent = node;
            }
            leafNodes.Add(parent);
            codes.Add(code);
        }
        if (codes.Count == 0) throw new UserInputException("the label tree has no labels; give at least one label.");
        return new LabelTree(nodes, parents, descriptions, leafNodes, codes);
    }

    /// <summary>Nodes at depth <paramref name="level"/> (1 = children of the root).</summary>
    public int[] NodesAt(int level) => [.. Enumerable.Range(0, NodeCount).Where(i => Depth[i] == level)];

    /// <summary>
    /// Fixed edges of level <paramref name="level"/>, as a [nodes at level, all nodes] 0/1 matrix: every node of the level
    /// attends to itself (self loop) and its parent (child → parent edge).
    /// </summary>
    public float[,] FixedEdges(int level)
    {
        var rows = NodesAt(level);
        var edges = new float[rows.Length, NodeCount];
        for (var r = 0; r < rows.Length; r++)
        {
            edges[r, rows[r]] = 1;
            edges[r, Parent[rows[r]]] = 1;
        }
        return edges;
    }

    /// <summary>Sibling edges of level <paramref name="level"/>: other children of the same parent ([nodes at level, all nodes], 0/1).</summary>
    public float[,] SiblingEdges(int level)
    {
        var rows = NodesAt(level);
        var edges = new float[rows.Length, NodeCount];
        for (var r = 0; r < rows.Length; r++)
        {
            for (var j = 1; j < NodeCount; j++)
            {
                if (j != rows[r] && Parent[j] == Parent[rows[r]]) edges[r, j] = 1;
            }
        }
        return edges;
    }

    /// <summary>Multi-hot targets [records, labels] of label-index lists.</summary>
    public Tensor MultiHot(IReadOnlyList<int[]> labels)
    {
        var data = new float[labels.Count * LabelCount];
        for (var i = 0; i < labels.Count; i++)
        {
            foreach (var label in labels[i]) data[i * LabelCount + label] = 1;
        }
        return tensor(data, [labels.Count, LabelCount]);
    }
}
