using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// MoEfication (Zhang et al. 2022): splits every FFN layer's neurons into equal-size experts.
/// Layers are independent, so <see cref="PartitionLayer(Tensor, int, string, long)"/> can run each layer on a different worker
/// with <see cref="LayerSeed"/> and <see cref="LayerRows"/>, and the results equal <see cref="Partition"/>'s.
/// </summary>
public static class MoEfication
{
    /// <summary>Parameter clustering: balanced k-means on the L2-normalised [gate_proj row ‖ up_proj row] of each neuron.</summary>
    public const string BalancedKMeans = "balanced-kmeans";
    /// <summary>A seeded random permutation cut into equal parts: the control.</summary>
    public const string Random = "random";
    /// <summary>Co-activation clustering from the paper; not implemented yet.</summary>
    public const string Cooccurrence = "cooccurrence";

    /// <summary>The methods <see cref="PartitionLayer(Tensor, int, string, long)"/> accepts.</summary>
    public static IReadOnlyList<string> Methods { get; } = [BalancedKMeans, Random];

    /// <summary>Upper bound on k-means rounds (assignment + centroid update); it usually stops earlier, when no neuron moves.</summary>
    public const int MaxIterations = 50;

    /// <summary>Upper bound on full passes of pairwise swap refinement per assignment step.</summary>
    public const int MaxSwapPasses = 20;

    /// <summary>Partitions every layer of <paramref name="model"/>; reports the number of finished layers.</summary>
    public static ExpertPartition Partition(CausalLanguageModel model, int experts, string method, long seed, IProgress<int>? layersDone = null)
    {
        var config = model.Config;
        ExpertPartition.RequireDivisible(config.IntermediateSize, experts, "the model");
        RequireMethod(method);
        var assignments = new int[config.NumHiddenLayers][];
        for (var layer = 0; layer < assignments.Length; layer++)
        {
            assignments[layer] = PartitionLayer(model, layer, experts, method, seed);
            layersDone?.Report(layer + 1);
        }
        return new ExpertPartition
        {
            Experts = experts, IntermediateSize = config.IntermediateSize, Method = method, Seed = seed, ExpertOfNeuron = assignments,
        }.Validate("the partition");
    }

    /// <summary>Partitions layer <paramref name="layer"/> of <paramref name="model"/> as <see cref="Partition"/> does (with the layer's own seed): one shard of a MoEfication job.</summary>
    public static int[] PartitionLayer(CausalLanguageModel model, int layer, int experts, string method, long seed)
    {
        using var scope = NewDisposeScope();
        return PartitionLayer(LayerRows(model, layer), experts, method, LayerSeed(seed, layer));
    }

    /// <summary>
    /// Per layer, the mean within-expert cosine similarity of <paramref name="partition"/> and of an independent random
    /// partition (another seed than the partition's, so that a random partition is compared with another random split).
    /// </summary>
    public static IReadOnlyList<(double Partition, double Random)> CoherenceVersusRandom(string modelDirectory, ExpertPartition partition)
    {
        Runtime.TorchRuntime.Initialize();
        using var model = CausalLanguageModel.Load(modelDirectory);
        var layers = new List<(double, double)>();
        for (var layer = 0; layer < partition.Layers; layer++)
        {
            using var scope = NewDisposeScope();
            var rows = LayerRows(model, layer);
            var random = PartitionLayer(rows, partition.Experts, Random, LayerSeed(partition.Seed + 1, layer));
            layers.Add((MeanWithinExpertSimilarity(rows, partition.ExpertOfNeuron[layer], partition.Experts), MeanWithinExpertSimilarity(rows, random, partition.Experts)));
        }
        return layers;
    }

    /// <summary>The seed <see cref="Partition"/> gives layer <paramref name="layer"/>, so layers differ but each is reproducible alone.</summary>
    public static long LayerSeed(long seed, int layer) => unchecked(seed * 1_000_003L + layer);

    /// <summary>Per neuron of layer <paramref name="layer"/>: its gate_proj row and up_proj row concatenated, L2-normalised: [intermediate, 2·hidden].</summary>
    public static Tensor LayerRows(CausalLanguageModel model, int layer)
    {
        using var guard = no_grad();
        var mlp = model.Layers[layer].Mlp;
        return Normalize(cat([mlp.GateProj.weight!, mlp.UpProj.weight!], dim: 1).to_type(ScalarType.Float32));
    }

    /// <summary>
    /// The expert id of every row of <paramref name="rows"/> [neurons, features]; every expert gets exactly neurons / experts rows.
    /// Deterministic for a seed. Rows are L2-normalised here, so any scale works.
    /// </summary>
    public static int[] PartitionLayer(Tensor rows, int experts, string method, long seed)
    {
        if (rows.dim() != 2) throw new ArgumentException($"rows must be [neurons, features], got [{string.Join(", ", rows.shape)}].", nameof(rows));
        var neurons = (int)rows.shape[0];
        ExpertPartition.RequireDivisible(neurons, experts, "the layer");
        return RequireMethod(method) switch
        {
            Random => RandomPartition(neurons, experts, seed),
            _ => BalancedKMeansPartition(rows, experts, seed),
        };
    }

    /// <summary>
    /// Mean over experts of the mean cosine similarity between distinct rows of the same expert: the objective
    /// parameter clustering raises (a random partition scores about the layer's overall mean similarity).
    /// </summary>
    public static double MeanWithinExpertSimilarity(Tensor rows, int[] expertOfNeuron, int experts)
    {
        using var scope = NewDisposeScope();
        var normalized = Normalize(rows.to_type(ScalarType.Float64));
        var size = expertOfNeuron.Length / experts;
        if (size < 2) return 1.0;
        var sums = zeros([experts, normalized.shape[1]], ScalarType.Float64, device: rows.device)
            .index_add_(0, tensor(expertOfNeuron.Select(e => (long)e).ToArray(), device: rows.device), normalized, 1.0);
        // Σ_{i≠j} x_i·x_j = ‖Σ x_i‖² − Σ ‖x_i‖², and every ‖x_i‖ is 1 (an all-zero row counts as 0).
        var selfTerms = zeros([experts], ScalarType.Float64, device: rows.device)
            .index_add_(0, tensor(expertOfNeuron.Select(e => (long)e).ToArray(), device: rows.device), normalized.square().sum(1), 1.0);
        var pairs = (sums.square().sum(1) - selfTerms) / (size * (size - 1.0));
        return pairs.mean().item<double>();
    }

    /// <summary>Returns <paramref name="method"/> when it is one of <see cref="Methods"/>; otherwise a user error listing them.</summary>
    public static string RequireMethod(string method)
    {
        if (Methods.Contains(method)) return method;
        var available = string.Join(", ", Methods);
        if (method == Cooccurrence) throw new UserInputException($"The partition method '{Cooccurrence}' is not implemented yet; use one of: {available}.");
        throw new UserInputException($"Unknown partition method '{method}'; use one of: {available}.");
    }

    private static Tensor Normalize(Tensor rows) => rows / rows.norm(1, keepdim: true).clamp_min(1e-12);

    /// <summary>System.Random with an int seed is the stable legacy generator, so permutations do not change across .NET versions.</summary>
    private static System.Random Generator(long seed) => new(unchecked((int)(seed ^ (seed >> 32))));

    private static int[] RandomPartition(int neurons, int experts, long seed)
    {
        var order = Enumerable.Range(0, neurons).ToArray();
        var random = Generator(seed);
        for (var i = neurons - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var size = neurons / experts;
        var assignment = new int[neurons];
        for (var position = 0; position < neurons; position++) assignment[order[position]] = position / size;
        return assignment;
    }

    private static int[] BalancedKMeansPartition(Tensor rows, int experts, long seed)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var points = Normalize(rows.detach().to_type(ScalarType.Float32));
        var neurons = (int)points.shape[0];
        var centroids = KMeansPlusPlus(points, experts, Generator(seed));
        int[]? assignment = null;
        for (var iteration = 0; iteration < MaxIterations; iteration++)
        {
            var distances = SquaredDistances(points, centroids);
            var next = BalancedAssignment(distances, neurons, experts, assignment);
            if (assignment is not null && next.AsSpan().SequenceEqual(assignment)) break;
            assignment = next;
            centroids = Centroids(points, assignment, experts);
        }
        return assignment!;
    }

    /// <summary>k-means++ seeding: the first centroid uniformly, each next one with probability ∝ squared distance to the nearest chosen.</summary>
    private static Tensor KMeansPlusPlus(Tensor points, int experts, System.Random random)
    {
        var neurons = (int)points.shape[0];
        var chosen = new List<long> { random.Next(neurons) };
        var nearest = SquaredDistances(points, points[chosen[0]].unsqueeze(0)).squeeze(1);
        while (chosen.Count < experts)
        {
            var weights = nearest.clamp_min(0).to_type(ScalarType.Float64).cpu().data<double>().ToArray();
            var total = weights.Sum();
            long pick;
            if (total <= 0)
            {
                // Every point coincides with a chosen centroid: take the first point not chosen yet.
                pick = Enumerable.Range(0, neurons).First(n => !chosen.Contains(n));
            }
            else
            {
                var target = random.NextDouble() * total;
                pick = neurons - 1;
                for (var n = 0; n < neurons; n++)
                {
                    target -= weights[n];
                    if (target < 0 && weights[n] > 0) { pick = n; break; }
                }
            }
            chosen.Add(pick);
            nearest = minimum(nearest, SquaredDistances(points, points[pick].unsqueeze(0)).squeeze(1));
        }
        return points.index_select(0, tensor(chosen.ToArray(), device: points.device)).clone();
    }

    /// <summary>‖x − c‖² for every point and centroid, [neurons, experts], by one matmul.</summary>
    private static Tensor SquaredDistances(Tensor points, Tensor centroids) =>
        (points.square().sum(1, keepdim: true) + centroids.square().sum(1).unsqueeze(0) - 2 * points.matmul(centroids.T)).clamp_min(0);

    private static Tensor Centroids(Tensor points, int[] assignment, int experts)
    {
        var index = tensor(assignment.Select(e => (long)e).ToArray(), device: points.device);
        var sums = zeros([experts, points.shape[1]], points.dtype, device: points.device).index_add_(0, index, points, 1.0);
        return sums / (assignment.Length / experts);
    }

    /// <summary>
    /// Balanced assignment to fixed centroids: greedy over all (neuron, expert) pairs by ascending distance while the
    /// expert has room, then pairwise swaps between experts while a swap lowers the total distance.
    /// The <paramref name="previous"/> assignment is kept when it is no worse, so the loop can detect convergence.
    /// </summary>
    private static int[] BalancedAssignment(Tensor distanceTensor, int neurons, int experts, int[]? previous)
    {
        var distances = distanceTensor.to_type(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var size = neurons / experts;
        var keys = (double[])distances.Clone();
        var pairs = Enumerable.Range(0, neurons * experts).ToArray();
        Array.Sort(keys, pairs);
        var assignment = new int[neurons];
        Array.Fill(assignment, -1);
        var room = new int[experts];
        Array.Fill(room, size);
        var left = neurons;
        foreach (var pair in pairs)
        {
            int neuron = pair / experts, expert = pair % experts;
            if (assignment[neuron] >= 0 || room[expert] == 0) continue;
            assignment[neuron] = expert;
            room[expert]--;
            if (--left == 0) break;
        }
        RefineBySwaps(distances, assignment, experts);
        if (previous is not null)
        {
            // Only move when it pays: ties between equally good balanced assignments must not loop forever.
            var kept = (int[])previous.Clone();
            RefineBySwaps(distances, kept, experts);
            if (Total(distances, kept, experts) <= Total(distances, assignment, experts) + 1e-9) return kept;
        }
        return assignment;
    }

    /// <summary>
    /// For each pair of experts (a, b), the gain of moving neuron i from a to b is d[i,a] − d[i,b]; swapping i ∈ a with j ∈ b gains
    /// the sum. Pairing a's and b's neurons by descending gain gives the best swaps first; passes repeat until none gains.
    /// </summary>
    private static void RefineBySwaps(double[] distances, int[] assignment, int experts)
    {
        const double minimumGain = 1e-9;
        var neurons = assignment.Length;
        for (var pass = 0; pass < MaxSwapPasses; pass++)
        {
            var swapped = false;
            var members = new List<int>[experts];
            for (var e = 0; e < experts; e++) members[e] = [];
            for (var n = 0; n < neurons; n++) members[assignment[n]].Add(n);
            // best[a, b] = the largest gain of moving one of a's neurons to b: a pair whose two bests do not add up to a gain
            // has no improving swap, so only the few pairs that do are sorted (O(n·E) per pass instead of E²/2 sorts).
            var best = new double[experts * experts];
            Array.Fill(best, double.NegativeInfinity);
            for (var n = 0; n < neurons; n++)
            {
                var from = assignment[n];
                for (var to = 0; to < experts; to++)
                {
                    var gain = distances[n * experts + from] - distances[n * experts + to];
                    if (gain > best[from * experts + to]) best[from * experts + to] = gain;
                }
            }
            for (var a = 0; a < experts; a++)
            {
                for (var b = a + 1; b < experts; b++)
                {
                    if (best[a * experts + b] + best[b * experts + a] <= minimumGain) continue;
                    var fromA = ByGain(members[a], a, b);
                    var fromB = ByGain(members[b], b, a);
                    for (var k = 0; k < fromA.Length && k < fromB.Length; k++)
                    {
                        if (fromA[k].Gain + fromB[k].Gain <= minimumGain) break;
                        int i = fromA[k].Neuron, j = fromB[k].Neuron;
                        assignment[i] = b;
                        assignment[j] = a;
                        members[a][members[a].IndexOf(i)] = j;
                        members[b][members[b].IndexOf(j)] = i;
                        swapped = true;
                    }
                }
            }
            if (!swapped) return;
        }

        (int Neuron, double Gain)[] ByGain(List<int> group, int from, int to)
        {
            var gains = group.Select(n => (Neuron: n, Gain: distances[n * experts + from] - distances[n * experts + to])).ToArray();
            // Ties broken by neuron index, so the result does not depend on list order.
            Array.Sort(gains, (x, y) => x.Gain != y.Gain ? y.Gain.CompareTo(x.Gain) : x.Neuron.CompareTo(y.Neuron));
            return gains;
        }
    }

    private static double Total(double[] distances, int[] assignment, int experts)
    {
        var total = 0.0;
        for (var n = 0; n < assignment.Length; n++) total += distances[n * experts + assignment[n]];
        return total;
    }
}
