using System.Text.Json.Serialization;

namespace Babel.Modeling.Text2Tree;

/// <summary>Macro-F1 over one label-frequency bucket.</summary>
public sealed record BucketScore(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("rule")] string Rule,
    [property: JsonPropertyName("labels")] int Labels,
    [property: JsonPropertyName("macro_f1")] double MacroF1);

/// <summary>Scores of a model on one split.</summary>
public sealed record ClassificationScores(
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("macro_f1")] double MacroF1,
    [property: JsonPropertyName("micro_f1")] double MicroF1,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("buckets")] IReadOnlyList<BucketScore> Buckets);

/// <summary>
/// F1 scores from gold and predicted label sets. Macro-F1 averages the per-label F1 = 2TP / (2TP + FP + FN) over the
/// labels that occur in the gold or predicted sets of the evaluated records (as scikit-learn does); micro-F1 pools the
/// counts; accuracy is the share of records whose predicted set equals the gold set. Buckets group labels by their
/// training count: tail below <see cref="TailBelow"/>, head from <see cref="HeadFrom"/>, medium in between.
/// </summary>
public static class ClassificationMetrics
{
    /// <summary>Labels with fewer training records than this are tail labels (on ICPC-2's full train split, 742 of 1,366 codes).</summary>
    public const int TailBelow = 5;

    /// <summary>Labels with at least this many training records are head labels (on ICPC-2's full train split, 222 codes).</summary>
    public const int HeadFrom = 50;

    public static IReadOnlyList<string> BucketNames { get; } = ["head", "medium", "tail"];

    public static string BucketOf(int trainCount) => trainCount >= HeadFrom ? "head" : trainCount >= TailBelow ? "medium" : "tail";

    public static string BucketRule(string bucket) => bucket switch
    {
        "head" => $"train count >= {HeadFrom}",
        "medium" => $"{TailBelow} <= train count < {HeadFrom}",
        _ => $"train count < {TailBelow}",
    };

    /// <summary>Scores <paramref name="predicted"/> against <paramref name="gold"/> (label-index sets per record).</summary>
    public static ClassificationScores Score(IReadOnlyList<int[]> gold, IReadOnlyList<int[]> predicted, IReadOnlyList<int> trainCounts)
    {
        if (gold.Count != predicted.Count) throw new ArgumentException("gold and predicted differ in length.");
        var labels = trainCounts.Count;
        var tp = new long[labels];
        var fp = new long[labels];
        var fn = new long[labels];
        var exact = 0;
        for (var i = 0; i < gold.Count; i++)
        {
            var g = gold[i].ToHashSet();
            var p = predicted[i].ToHashSet();
            foreach (var label in p)
            {
                if (g.Contains(label)) tp[label]++;
                else fp[label]++;
            }
            foreach (var label in g)
            {
                if (!p.Contains(label)) fn[label]++;
            }
            if (g.SetEquals(p)) exact++;
        }
        var present = Enumerable.Range(0, labels).Where(l => tp[l] + fp[l] + fn[l] > 0).ToList();
        double F1(int l) => 2.0 * tp[l] / (2.0 * tp[l] + fp[l] + fn[l]);
        double Macro(IEnumerable<int> set)
        {
            var list = set.ToList();
            return list.Count == 0 ? 0 : list.Average(F1);
        }
        long sumTp = tp.Sum(), sumFp = fp.Sum(), sumFn = fn.Sum();
        var micro = sumTp + sumFp + sumFn == 0 ? 0 : 2.0 * sumTp / (2.0 * sumTp + sumFp + sumFn);
        var buckets = BucketNames.Select(name =>
        {
            var members = present.Where(l => BucketOf(trainCounts[l]) == name).ToList();
            return new BucketScore(name, BucketRule(name), members.Count, Macro(members));
        }).ToList();
        return new ClassificationScores(gold.Count, Macro(present), micro, gold.Count == 0 ? 0 : exact / (double)gold.Count, buckets);
    }
}
