namespace Babel.Modeling.Analysis;

/// <summary>Similarity of two languages' activation-frequency vectors (all layers × experts flattened).</summary>
public static class LanguageSimilarity
{
    public const string Cosine = "cosine";
    public const string Spearman = "spearman";
    public static IReadOnlyList<string> Measures { get; } = [Cosine, Spearman];

    /// <summary>Cosine of the angle between <paramref name="a"/> and <paramref name="b"/>; 0 when either is all zeros.</summary>
    public static double CosineSimilarity(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Count; i++)
        {
            dot += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }

    /// <summary>
    /// Spearman's rank correlation: Pearson's correlation of the ranks, ties given their average rank. 0 when
    /// either vector is constant (its ranks have no variance, so no ordering can agree or disagree).
    /// </summary>
    public static double SpearmanCorrelation(IReadOnlyList<double> a, IReadOnlyList<double> b) => Pearson(AverageRanks(a), AverageRanks(b));

    /// <summary>1-based ranks; equal values share the mean of the ranks they span.</summary>
    public static double[] AverageRanks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (var start = 0; start < order.Length;)
        {
            var end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            var rank = (start + end) / 2.0 + 1;
            for (var k = start; k <= end; k++) ranks[order[k]] = rank;
            start = end + 1;
        }
        return ranks;
    }

    public static double Pearson(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        var ma = a.Average();
        var mb = b.Average();
        double cov = 0, va = 0, vb = 0;
        for (var i = 0; i < a.Count; i++)
        {
            cov += (a[i] - ma) * (b[i] - mb);
            va += (a[i] - ma) * (a[i] - ma);
            vb += (b[i] - mb) * (b[i] - mb);
        }
        return va == 0 || vb == 0 ? 0 : cov / Math.Sqrt(va * vb);
    }

    /// <summary>The symmetric matrix of <paramref name="measure"/> between every pair of the table's languages (1 on the diagonal).</summary>
    public static double[,] Matrix(FrequencyTable table, string measure)
    {
        var vectors = Enumerable.Range(0, table.Languages.Count).Select(table.Flattened).ToArray();
        Func<double[], double[], double> similarity = measure switch
        {
            Cosine => CosineSimilarity,
            Spearman => SpearmanCorrelation,
            _ => throw new ArgumentException($"unknown similarity '{measure}'", nameof(measure)),
        };
        var n = vectors.Length;
        var matrix = new double[n, n];
        for (var i = 0; i < n; i++)
        {
            matrix[i, i] = 1;
            for (var j = i + 1; j < n; j++) matrix[i, j] = matrix[j, i] = similarity(vectors[i], vectors[j]);
        }
        return matrix;
    }
}
