using Babel.Modeling.Runtime;
using Babel.Modeling.Text2Tree;
using Babel.Storage;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Text2Tree;

/// <summary>The losses against naive loop implementations, gradient flow, the gate and the cascade.</summary>
public class Text2TreeLossTests
{
    private const double Tau = 0.5;

    public Text2TreeLossTests() => TorchRuntime.Initialize();

    private static double[,] Matrix(Tensor t)
    {
        var rows = (int)t.shape[0];
        var columns = (int)t.shape[1];
        var values = t.detach().to_type(ScalarType.Float64).data<double>().ToArray();
        var result = new double[rows, columns];
        for (var i = 0; i < rows; i++) for (var j = 0; j < columns; j++) result[i, j] = values[i * columns + j];
        return result;
    }

    private static double Cos(double[,] a, int i, double[,] b, int j)
    {
        double dot = 0, na = 0, nb = 0;
        for (var k = 0; k < a.GetLength(1); k++)
        {
            dot += a[i, k] * b[j, k];
            na += a[i, k] * a[i, k];
            nb += b[j, k] * b[j, k];
        }
        return dot / Math.Sqrt(na * nb);
    }

    /// <summary>w_ij by loops: mean label embedding per sample, cosine / τ, softmax over j ≠ i.</summary>
    private static double[,] NaiveWeights(double[,] labels, double[,] targets)
    {
        int b = targets.GetLength(0), c = targets.GetLength(1), h = labels.GetLength(1);
        var e = new double[b, h];
        for (var i = 0; i < b; i++)
        {
            double count = 0;
            for (var l = 0; l < c; l++) count += targets[i, l];
            for (var l = 0; l < c; l++) for (var k = 0; k < h; k++) e[i, k] += targets[i, l] * labels[l, k] / count;
        }
        var w = new double[b, b];
        for (var i = 0; i < b; i++)
        {
            double sum = 0;
            for (var j = 0; j < b; j++) if (j != i) sum += Math.Exp(Cos(e, i, e, j) / Tau);
            for (var j = 0; j < b; j++) w[i, j] = j == i ? 0 : Math.Exp(Cos(e, i, e, j) / Tau) / sum;
        }
        return w;
    }

    private static (Tensor Z, Tensor Labels, Tensor Targets, Tensor W, Tensor Bias) Batch(bool multilabel)
    {
        var generator = new Generator(5);
        var z = randn([5, 4], dtype: ScalarType.Float64, generator: generator);
        var labels = randn([3, 4], dtype: ScalarType.Float64, generator: generator);
        var targets = multilabel
            ? tensor(new double[] { 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0 }, [5, 3])
            : tensor(new double[] { 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0 }, [5, 3]);
        var w = randn([3, 4], dtype: ScalarType.Float64, generator: generator);
        var bias = randn([3], dtype: ScalarType.Float64, generator: generator);
        return (z, labels, targets, w, bias);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Similarity_surrogate_matches_a_naive_loop(bool multilabel)
    {
        var (z, labels, targets, _, _) = Batch(multilabel);
        var weights = Text2TreeLosses.SimilarityWeights(labels, targets, Tau);
        var actual = Text2TreeLosses.SimilaritySurrogate(z, weights, Tau).item<double>();

        var naiveW = NaiveWeights(Matrix(labels), Matrix(targets));
        var zs = Matrix(z);
        var b = zs.GetLength(0);
        Assert.Equal(naiveW[1, 3], Matrix(weights)[1, 3], 10);
        double loss = 0;
        for (var i = 0; i < b; i++)
        {
            double denominator = 0;
            for (var k = 0; k < b; k++) if (k != i) denominator += Math.Exp(Cos(zs, i, zs, k) / Tau);
            for (var j = 0; j < b; j++)
            {
                if (j == i) continue;
                loss -= naiveW[i, j] * (Cos(zs, i, zs, j) / Tau - Math.Log(denominator));
            }
        }
        Assert.Equal(loss / b, actual, 9);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Dissimilarity_mixup_matches_a_naive_loop_over_all_pairs(bool multilabel)
    {
        var (z, labels, targets, w, bias) = Batch(multilabel);
        var weights = Text2TreeLosses.SimilarityWeights(labels, targets, Tau);
        var ratios = Text2TreeLosses.MixupRatios(weights);
        var actual = Text2TreeLosses.DissimilarityMixup(z, targets, ratios, x => x.matmul(w.t()) + bias, multilabel).item<double>();

        var naiveW = NaiveWeights(Matrix(labels), Matrix(targets));
        double[,] zs = Matrix(z), ys = Matrix(targets), ws = Matrix(w);
        var bs = bias.data<double>().ToArray();
        int b = zs.GetLength(0), c = ys.GetLength(1), h = zs.GetLength(1);
        double total = 0;
        for (var i = 0; i < b; i++)
        {
            double max = 0;
            for (var k = 0; k < b; k++) max = Math.Max(max, naiveW[i, k]);
            for (var j = 0; j < b; j++)
            {
                var lambda = naiveW[i, j] / max;
                var logits = new double[c];
                for (var l = 0; l < c; l++)
                {
                    logits[l] = bs[l];
                    for (var k = 0; k < h; k++) logits[l] += ws[l, k] * ((1 - lambda) * zs[i, k] + lambda * zs[j, k]);
                }
                var soft = Enumerable.Range(0, c).Select(l => (1 - lambda) * ys[i, l] + lambda * ys[j, l]).ToArray();
                if (multilabel)
                {
                    double pair = 0;
                    for (var l = 0; l < c; l++)
                    {
                        var p = 1 / (1 + Math.Exp(-logits[l]));
                        pair -= soft[l] * Math.Log(p) + (1 - soft[l]) * Math.Log(1 - p);
                    }
                    total += pair / c;
                }
                else
                {
                    var logSum = Math.Log(logits.Sum(Math.Exp));
                    for (var l = 0; l < c; l++) total -= soft[l] * (logits[l] - logSum);
                }
            }
        }
        Assert.Equal(total / (b * b), actual, 9);
        // The ratios are stop-grad: λ_ii = 0 and each row's most similar partner gets 1.
        var r = Matrix(ratios);
        for (var i = 0; i < b; i++)
        {
            Assert.Equal(0, r[i, i]);
            Assert.Equal(1, Enumerable.Range(0, b).Max(j => r[i, j]), 12);
        }
        Assert.False(ratios.requires_grad);
    }

    /// <summary>The paper's M by loops: summed label embedding per sample, cosine without τ, softmax over every j (self included).</summary>
    private static double[,] NaivePaperWeights(double[,] labels, double[,] targets)
    {
        int b = targets.GetLength(0), c = targets.GetLength(1), h = labels.GetLength(1);
        var e = new double[b, h];
        for (var i = 0; i < b; i++) for (var l = 0; l < c; l++) for (var k = 0; k < h; k++) e[i, k] += targets[i, l] * labels[l, k];
        var m = new double[b, b];
        for (var i = 0; i < b; i++)
        {
            double sum = 0;
            for (var j = 0; j < b; j++) sum += Math.Exp(Cos(e, i, e, j));
            for (var j = 0; j < b; j++) m[i, j] = Math.Exp(Cos(e, i, e, j)) / sum;
        }
        return m;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_papers_similarity_surrogate_matches_a_naive_loop_of_the_authors_formula(bool multilabel)
    {
        var (z, labels, targets, _, _) = Batch(multilabel);
        var weights = Text2TreeLosses.PaperSimilarityWeights(labels, targets);
        var actual = Text2TreeLosses.PaperSimilaritySurrogate(z, weights, Tau).item<double>();

        var m = NaivePaperWeights(Matrix(labels), Matrix(targets));
        var zs = Matrix(z);
        var b = zs.GetLength(0);
        for (var i = 0; i < b; i++) for (var j = 0; j < b; j++) Assert.Equal(m[i, j], Matrix(weights)[i, j], 10);
        double loss = 0;
        for (var i = 0; i < b; i++)
        {
            // Self left out of the denominator only; every j, self included, weighs in with M_ij (whose row sums to 1).
            double denominator = 0;
            for (var k = 0; k < b; k++) if (k != i) denominator += Math.Exp(Cos(zs, i, zs, k) / Tau);
            double row = 0;
            for (var j = 0; j < b; j++) row += m[i, j] * (Cos(zs, i, zs, j) / Tau - Math.Log(denominator));
            loss -= Tau / 0.07 * row;
        }
        Assert.Equal(loss / b, actual, 9);
    }

    [Fact]
    public void The_papers_mixing_keeps_the_sample_itself_and_mixes_dissimilar_partners_in_more()
    {
        var (_, labels, targets, _, _) = Batch(multilabel: false);
        var weights = Text2TreeLosses.PaperSimilarityWeights(labels, targets);
        var ratios = Matrix(Text2TreeLosses.PaperMixupRatios(weights));
        var m = NaivePaperWeights(Matrix(labels), Matrix(targets));
        var b = m.GetLength(0);
        for (var i = 0; i < b; i++)
        {
            var max = Enumerable.Range(0, b).Max(j => m[i, j]);
            // The partner's share is 1 − M_ij / max_k M_ik: 0 for the sample itself (its own cosine, 1, is the row's largest).
            for (var j = 0; j < b; j++) Assert.Equal(1 - m[i, j] / max, ratios[i, j], 10);
            Assert.Equal(0, ratios[i, i], 12);
            var partners = Enumerable.Range(0, b).Where(j => j != i).ToList();
            var leastSimilar = partners.MinBy(j => m[i, j]);
            var mostSimilar = partners.MaxBy(j => m[i, j]);
            Assert.True(ratios[i, leastSimilar] >= ratios[i, mostSimilar]);
        }
    }

    [Fact]
    public void A_sample_without_labels_is_similar_to_itself_alone()
    {
        var (_, labels, _, _, _) = Batch(multilabel: true);
        var targets = tensor(new double[] { 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0 }, [5, 3]);
        var weights = Matrix(Text2TreeLosses.PaperSimilarityWeights(labels, targets));
        Assert.Equal(1, weights[1, 1], 6);
        for (var j = 0; j < 5; j++) if (j != 1) Assert.Equal(0, weights[1, j], 6);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Focal_loss_matches_a_naive_loop(bool multilabel)
    {
        var (z, _, targets, w, bias) = Batch(multilabel);
        var logits = z.matmul(w.t()) + bias;
        const double Gamma = 2;
        var actual = Text2TreeLosses.Focal(logits, targets, multilabel, Gamma).item<double>();
        double[,] ls = Matrix(logits), ys = Matrix(targets);
        int b = ls.GetLength(0), c = ls.GetLength(1);
        double total = 0;
        for (var i = 0; i < b; i++)
        {
            if (multilabel)
            {
                double row = 0;
                for (var l = 0; l < c; l++)
                {
                    var p = 1 / (1 + Math.Exp(-ls[i, l]));
                    var pt = ys[i, l] == 1 ? p : 1 - p;
                    row -= Math.Pow(1 - pt, Gamma) * Math.Log(pt);
                }
                total += row / c;
            }
            else
            {
                var sum = Enumerable.Range(0, c).Sum(l => Math.Exp(ls[i, l]));
                for (var l = 0; l < c; l++)
                {
                    var p = Math.Exp(ls[i, l]) / sum;
                    total -= ys[i, l] * Math.Pow(1 - p, Gamma) * Math.Log(p);
                }
            }
        }
        Assert.Equal(total / b, actual, 9);
        // γ = 0 is cross-entropy.
        Assert.Equal(Text2TreeLosses.SoftLabelLoss(logits, targets, multilabel).item<double>(), Text2TreeLosses.Focal(logits, targets, multilabel, 0).item<double>(), 10);
    }

    [Fact]
    public void Inverse_frequency_weights_are_N_over_C_n_for_the_seen_classes()
    {
        // N = 7 records over C = 3 seen classes; the unseen class weighs 0.
        var weights = Text2TreeLosses.InverseFrequencyWeights([4, 1, 0, 2]);
        Assert.Equal(7f / 12f, weights[0], 6);
        Assert.Equal(7f / 3f, weights[1], 6);
        Assert.Equal(0f, weights[2]);
        Assert.Equal(7f / 6f, weights[3], 6);
    }

    [Fact]
    public void Straight_through_gate_is_hard_forward_and_passes_the_sigmoid_gradient_back()
    {
        var logits = tensor(new float[] { -2f, -0.1f, 0f, 0.3f, 4f }).requires_grad_(true);
        var gate = StraightThroughGate.Apply(logits);
        Assert.Equal([0f, 0f, 1f, 1f, 1f], gate.data<float>().ToArray());
        gate.sum().backward();
        var expected = new[] { -2.0, -0.1, 0, 0.3, 4 }.Select(x => { var s = 1 / (1 + Math.Exp(-x)); return s * (1 - s); }).ToArray();
        var grad = logits.grad!.data<float>().ToArray();
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], grad[i], 6);
    }

    [Fact]
    public void Babels_cascade_updates_each_level_from_its_parent_and_a_closed_gate_cuts_the_siblings()
    {
        var tree = Text2TreeTestData.HandTree();
        manual_seed(1);
        using var cascade = new CascadeAttention(tree, 8, form: Text2TreeCascades.Babel);
        using var noGrad = no_grad();
        var before = cascade.Nodes();
        // Changing sibling A02's initial embedding changes leaf A01 while its gate is open...
        var a02 = 4;
        var reference = cascade.Nodes();
        cascade.NodeEmbeddings[a02].add_(3.0f);
        var open = cascade.Nodes();
        Assert.False(open[3].allclose(reference[3], 1e-6, 1e-6));
        // ...and not once the leaf level's gates are closed (leaf A01 sees only itself and its parent).
        cascade.GateLogits[2].fill_(-5f);
        var closedChanged = cascade.Nodes();
        cascade.NodeEmbeddings[a02].sub_(3.0f);
        var closedReference = cascade.Nodes();
        Assert.True(closedChanged[3].allclose(closedReference[3], 1e-6, 1e-6));
        // The root is on no level: it passes through unchanged.
        Assert.True(before[0].allclose(cascade.NodeEmbeddings[0], 0, 0));
    }

    /// <summary>
    /// The authors' cascade against a plain loop of their formula, level by level: q, k, v with biases; a hard gate per
    /// sibling edge from sigmoid(q_i·C·k_j + b) ≥ 0.5; softmax(q_i·k_j/√h − 10⁴·(1 − mask_ij)); the level's nodes replaced by
    /// the attention output; LayerNorm (ε = 1e-5) over every node. Random C and biases so that some sibling gates are shut.
    /// </summary>
    [Fact]
    public void The_papers_cascade_equals_a_plain_loop_of_the_authors_formula()
    {
        var tree = Text2TreeTestData.HandTree();
        manual_seed(4);
        const int h = 8;
        using var cascade = new CascadeAttention(tree, h);
        Assert.Equal(Text2TreeCascades.Paper, cascade.Form);
        using var noGrad = no_grad();
        var parameters = cascade.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in parameters)
        {
            // Larger than initial values, so that the gates and the LayerNorm gains matter.
            if (!name.StartsWith("node", StringComparison.Ordinal)) parameter.copy_(randn(parameter.shape) * (name.EndsWith("gate_logits", StringComparison.Ordinal) ? 0.5 : 0.7));
        }
        double[] Row(Tensor t) => [.. t.to_type(ScalarType.Float64).data<double>()];
        double[,] Matrix(Tensor t)
        {
            var (rows, columns) = ((int)t.shape[0], (int)t.shape[1]);
            var flat = Row(t);
            var m = new double[rows, columns];
            for (var i = 0; i < rows; i++) for (var j = 0; j < columns; j++) m[i, j] = flat[i * columns + j];
            return m;
        }
        double[] Affine(double[,] w, double[] b, double[] v) => [.. Enumerable.Range(0, w.GetLength(0)).Select(i => b[i] + Enumerable.Range(0, v.Length).Sum(j => w[i, j] * v[j]))];

        var nodes = tree.NodeCount;
        var x = Enumerable.Range(0, nodes).Select(i => Row(cascade.NodeEmbeddings[i])).ToArray();
        var closed = 0;
        for (var level = 1; level <= tree.Levels; level++)
        {
            string P(string name) => $"levels.{level - 1}.{name}";
            var (wq, bq) = (Matrix(parameters[P("q_proj.weight")]), Row(parameters[P("q_proj.bias")]));
            var (wk, bk) = (Matrix(parameters[P("k_proj.weight")]), Row(parameters[P("k_proj.bias")]));
            var (wv, bv) = (Matrix(parameters[P("v_proj.weight")]), Row(parameters[P("v_proj.bias")]));
            var c = Matrix(parameters[P("connection")]);
            var b = Row(parameters[P("gate_logits")])[0];
            var (gain, shift) = (Row(parameters[P("norm.weight")]), Row(parameters[P("norm.bias")]));
            var rows = tree.NodesAt(level);
            var (fixedEdges, siblings) = (tree.FixedEdges(level), tree.SiblingEdges(level));
            var keys = x.Select(v => Affine(wk, bk, v)).ToArray();
            var values = x.Select(v => Affine(wv, bv, v)).ToArray();
            var next = x.Select(v => (double[])v.Clone()).ToArray();
            for (var r = 0; r < rows.Length; r++)
            {
                var q = Affine(wq, bq, x[rows[r]]);
                var scores = new double[nodes];
                for (var j = 0; j < nodes; j++)
                {
                    var connection = b;
                    for (var a = 0; a < h; a++) for (var e = 0; e < h; e++) connection += q[a] * c[a, e] * keys[j][e];
                    var gate = 1 / (1 + Math.Exp(-connection)) >= 0.5 ? 1.0 : 0.0;
                    if (siblings[r, j] == 1 && gate == 0) closed++;
                    var mask = fixedEdges[r, j] + siblings[r, j] * gate;
                    scores[j] = Enumerable.Range(0, h).Sum(a => q[a] * keys[j][a]) / Math.Sqrt(h) - 1e4 * (1 - mask);
                }
                var max = scores.Max();
                var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                var total = weights.Sum();
                next[rows[r]] = [.. Enumerable.Range(0, h).Select(a => Enumerable.Range(0, nodes).Sum(j => weights[j] / total * values[j][a]))];
            }
            x = [.. next.Select(v =>
            {
                var mean = v.Average();
                var variance = v.Sum(t => (t - mean) * (t - mean)) / h;
                return v.Select((t, a) => (t - mean) / Math.Sqrt(variance + 1e-5) * gain[a] + shift[a]).ToArray();
            })];
        }
        Assert.True(closed > 0, "no sibling gate was shut: the test would not see per-edge gating");
        var actual = cascade.Nodes();
        for (var i = 0; i < nodes; i++)
        {
            var row = Row(actual[i]);
            for (var a = 0; a < h; a++) Assert.Equal(x[i][a], row[a], 4);
        }
    }

    [Fact]
    public void Both_SSL_and_DML_give_gradients_to_the_encoder_and_to_the_label_tree()
    {
        var tree = Text2TreeTestData.HandTree();
        manual_seed(2);
        using var encoder = Text2TreeTestData.Encoder();
        // Babel's variant: its label-match logits carry DML's gradient to the label tree.
        using var model = new Text2TreeClassifier(encoder, tree.LabelCount, new CascadeAttention(tree, encoder.Config.HiddenSize), labelLogits: true);
        var (ids, mask) = Text2TreeTrainer.Pad([[1, 5, 6, 7], [1, 8, 9], [1, 5, 9, 10, 11], [1, 12], [1, 13, 14]], padId: 0);
        using var targets = tree.MultiHot([[0], [1], [0], [3], [4]]);

        foreach (var term in new[] { "dml", "ssl" })
        {
            model.zero_grad();
            var z = model.Encode(ids, mask);
            var labels = model.LabelEmbeddings()!;
            var (_, dml, ssl) = Text2TreeLosses.Text2Tree(z, targets, labels, x => model.Classify(x, labels), multilabel: false, lambda: 0.5, tau: 0.1);
            (term == "dml" ? dml : ssl).backward();
            var encoderGrad = encoder.EmbedTokens.grad;
            Assert.NotNull(encoderGrad);
            Assert.True(encoderGrad.abs().sum().item<float>() > 0, $"{term} gives the encoder no gradient");
            var labelGrad = model.Cascade!.NodeEmbeddings.grad;
            Assert.NotNull(labelGrad);
            Assert.True(labelGrad.abs().sum().item<float>() > 0, $"{term} gives the label embeddings no gradient");
            var cascadeGrads = model.LabelParameters().Where(p => p.grad is not null).Sum(p => p.grad!.abs().sum().item<float>());
            Assert.True(cascadeGrads > 0, $"{term} gives the cascade no gradient");
        }
    }

    [Fact]
    public void In_the_papers_form_SSL_trains_encoder_projector_and_label_tree_while_DML_trains_the_encoder_alone()
    {
        var tree = Text2TreeTestData.HandTree();
        manual_seed(2);
        using var encoder = Text2TreeTestData.Encoder();
        using var model = new Text2TreeClassifier(encoder, tree.LabelCount, new CascadeAttention(tree, encoder.Config.HiddenSize));
        var (ids, mask) = Text2TreeTrainer.Pad([[1, 5, 6, 7], [1, 8, 9], [1, 5, 9, 10, 11], [1, 12], [1, 13, 14]], padId: 0);
        using var targets = tree.MultiHot([[0], [1], [0], [3], [4]]);
        static float Sum(IEnumerable<TorchSharp.Modules.Parameter> parameters) => parameters.Where(p => p.grad is not null).Sum(p => p.grad!.abs().sum().item<float>());

        foreach (var term in new[] { "dml", "ssl" })
        {
            model.zero_grad();
            var z = model.Encode(ids, mask);
            var labels = model.LabelEmbeddings()!;
            var (_, dml, ssl) = Text2TreeLosses.PaperText2Tree(z, model.Project(z), targets, labels, x => model.Classify(x, labels), multilabel: false, lambda: 0.01, tau: 1.0);
            (term == "dml" ? dml : ssl).backward();
            Assert.True(Sum(encoder.parameters()) > 0, $"{term} gives the encoder no gradient");
            var labelGradient = Sum(model.LabelParameters());
            // The authors detach DML's mixing ratios and classify with the linear head alone: only SSL reaches the tree.
            if (term == "ssl") Assert.True(labelGradient > 0, "SSL gives the label tree no gradient");
            else Assert.Equal(0f, labelGradient);
        }
    }

    [Fact]
    public void Label_parameters_are_separate_from_text_parameters()
    {
        var tree = Text2TreeTestData.HandTree();
        using var encoder = Text2TreeTestData.Encoder();
        using var model = new Text2TreeClassifier(encoder, tree.LabelCount, new CascadeAttention(tree, encoder.Config.HiddenSize));
        var label = model.LabelParameters();
        var text = model.TextParameters();
        Assert.Equal(model.parameters().Count(), label.Count + text.Count);
        Assert.Contains(label, p => p.Handle == model.Cascade!.NodeEmbeddings.Handle);
        Assert.DoesNotContain(text, p => p.Handle == model.Cascade!.NodeEmbeddings.Handle);
    }

    [Theory]
    [InlineData(-0.1, 0.1, "--lambda must be in [0, 1]")]
    [InlineData(1.5, 0.1, "--lambda must be in [0, 1]")]
    [InlineData(0.5, 0.0, "--tau must be a positive temperature")]
    [InlineData(0.5, -1.0, "--tau must be a positive temperature")]
    public void Lambda_outside_0_1_and_a_non_positive_tau_are_user_errors(double lambda, double tau, string message)
    {
        var error = Assert.Throws<UserInputException>(() => new Text2TreeOptions { Lambda = lambda, Tau = tau }.Validate());
        Assert.Contains(message, error.Message);
    }
}
