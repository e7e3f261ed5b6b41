namespace Babel.Modeling.Analysis;

/// <summary>
/// One merge of agglomerative clustering, numbered as SciPy's linkage does: leaves are 0 … n−1, the cluster made by
/// merge i is n + i. <see cref="Left"/> is the smaller id.
/// </summary>
public sealed record ClusterMerge(int Left, int Right, double Height, int Size);

/// <summary>A dendrogram: the n − 1 merges in order, and the leaves in drawing order (each merge's left subtree first).</summary>
public sealed record Dendrogram(IReadOnlyList<ClusterMerge> Merges, IReadOnlyList<int> LeafOrder);

/// <summary>
/// Hierarchical clustering with average linkage (UPGMA): repeatedly merge the two clusters whose mean pairwise leaf
/// distance is smallest. Ties go to the pair with the smallest ids, so the result is deterministic.
/// </summary>
public static class AverageLinkage
{
    public static Dendrogram Cluster(double[,] distance)
    {
        var n = distance.GetLength(0);
        if (n != distance.GetLength(1)) throw new ArgumentException("the distance matrix must be square.", nameof(distance));
        var members = new Dictionary<int, List<int>>();
        for (var i = 0; i < n; i++) members[i] = [i];
        var merges = new List<ClusterMerge>();
        var children = new Dictionary<int, (int Left, int Right)>();
        for (var step = 0; step < n - 1; step++)
        {
            var ids = members.Keys.Order().ToArray();
            (int A, int B, double D) best = (-1, -1, double.PositiveInfinity);
            for (var x = 0; x < ids.Length; x++)
            {
                for (var y = x + 1; y < ids.Length; y++)
                {
                    var d = Mean(distance, members[ids[x]], members[ids[y]]);
                    // Strictly smaller: the first pair in id order wins ties.
                    if (d < best.D || best.A < 0) best = (ids[x], ids[y], d);
                }
            }
            var id = n + step;
            members[id] = [.. members[best.A], .. members[best.B]];
            merges.Add(new ClusterMerge(best.A, best.B, best.D, members[id].Count));
            children[id] = (best.A, best.B);
            members.Remove(best.A);
            members.Remove(best.B);
        }
        var order = new List<int>();
        if (n > 0) Visit(n == 1 ? 0 : 2 * n - 2, n, children, order);
        return new Dendrogram(merges, order);
    }

    private static double Mean(double[,] distance, List<int> a, List<int> b)
    {
        var sum = 0.0;
        foreach (var i in a)
        {
            foreach (var j in b) sum += distance[i, j];
        }
        return sum / (a.Count * b.Count);
    }

    private static void Visit(int node, int leaves, Dictionary<int, (int Left, int Right)> children, List<int> order)
    {
        // Explicit stack: a deep, chain-like tree must not overflow the call stack.
        var stack = new Stack<int>();
        stack.Push(node);
        while (stack.Count > 0)
        {
            var current = stack.Pop();
            if (current < leaves)
            {
                order.Add(current);
                continue;
            }
            var (left, right) = children[current];
            stack.Push(right);
            stack.Push(left);
        }
    }
}
