using Babel.Grains.Text2Tree;
using Babel.Modeling.Runtime;
using Babel.Modeling.Text2Tree;
using Babel.Storage;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Text2Tree;

/// <summary>
/// The paper's ablations through the one training objective: which loss terms each method switches on, what reaches the
/// projector and the label tree, and how a grid plans them.
/// </summary>
public class Text2TreeAblationTests
{
    private static readonly long[][] _texts = [[1, 5, 6, 7], [1, 8, 9], [1, 5, 9, 10, 11], [1, 12], [1, 13, 14]];
    private static readonly int[][] _labels = [[0], [1], [0], [3], [4]];

    public Text2TreeAblationTests() => TorchRuntime.Initialize();

    private static float GradientSum(IEnumerable<Parameter> parameters) => parameters.Where(p => p.grad is not null).Sum(p => p.grad!.abs().sum().item<float>());

    /// <summary>The objective of <paramref name="method"/> at λ on a fresh Text2Tree classifier, after its backward pass.</summary>
    private static (double Loss, float Projector, float LabelTree, float Encoder, double CrossEntropy, double Ssl, double Dml) Run(string method, double lambda)
    {
        var tree = Text2TreeTestData.HandTree();
        manual_seed(2);
        using var encoder = Text2TreeTestData.Encoder();
        using var model = new Text2TreeClassifier(encoder, tree.LabelCount, new CascadeAttention(tree, encoder.Config.HiddenSize));
        var (ids, mask) = Text2TreeTrainer.Pad(_texts, padId: 0);
        using var targets = tree.MultiHot(_labels);
        using var weights = ones(tree.LabelCount);
        var options = new Text2TreeOptions { Method = method, Lambda = lambda, Tau = 1.0 }.Validate();
        var loss = Text2TreeTrainer.Objective(model, options, multilabel: false, ids, mask, targets, weights, step: 0);
        loss.backward();
        var projector = GradientSum(model.named_parameters().Where(p => p.name.StartsWith("projection", StringComparison.Ordinal)).Select(p => p.parameter));
        var labelTree = GradientSum(model.LabelParameters());
        var encoderGradient = GradientSum(encoder.parameters());
        // The pieces, computed apart from the trainer's switch.
        using var guard = no_grad();
        var z = model.Encode(ids, mask);
        var labels = model.LabelEmbeddings()!;
        var crossEntropy = Text2TreeLosses.SoftLabelLoss(model.Classify(z, null), targets, multilabel: false).item<float>();
        var similarity = Text2TreeLosses.PaperSimilarityWeights(labels, targets);
        var ssl = Text2TreeLosses.PaperSimilaritySurrogate(model.Project(z), similarity, 1.0).item<float>();
        var dml = Text2TreeLosses.DissimilarityMixup(z, targets, Text2TreeLosses.PaperMixupRatios(similarity), x => model.Classify(x, labels), multilabel: false).item<float>();
        return (loss.item<float>(), projector, labelTree, encoderGradient, crossEntropy, ssl, dml);
    }

    [Fact]
    public void SSL_only_is_cross_entropy_on_the_unmixed_batch_plus_the_surrogate_and_trains_projector_and_label_tree()
    {
        var run = Run(Text2TreeMethods.Text2TreeSsl, 0.3);
        Assert.Equal(0.7 * run.CrossEntropy + 0.3 * run.Ssl, run.Loss, 4);
        // Not the DML term: the mixed pairs give another value on this batch.
        Assert.True(Math.Abs(run.Dml - run.CrossEntropy) > 1e-3, $"DML {run.Dml} and cross-entropy {run.CrossEntropy} coincide; the test cannot tell them apart");
        Assert.True(run.Projector > 0, "SSL only gives the projector no gradient");
        Assert.True(run.LabelTree > 0, "SSL only gives the label tree no gradient");
        Assert.True(run.Encoder > 0, "SSL only gives the encoder no gradient");
    }

    [Fact]
    public void Text2tree_at_lambda_0_is_DML_only_and_leaves_projector_and_label_tree_without_gradient()
    {
        var run = Run(Text2TreeMethods.Text2Tree, 0);
        Assert.Equal(run.Dml, run.Loss, 4);
        Assert.True(Math.Abs(run.Loss - run.CrossEntropy) > 1e-3, "text2tree at λ = 0 is not mixing");
        // The paper detaches the mixing ratios: without SSL nothing reaches the projector or the tree.
        Assert.Equal(0f, run.Projector);
        Assert.Equal(0f, run.LabelTree);
        Assert.True(run.Encoder > 0);
    }

    [Fact]
    public void Text2tree_is_DML_plus_SSL_and_trains_projector_and_label_tree()
    {
        var run = Run(Text2TreeMethods.Text2Tree, 0.3);
        Assert.Equal(0.7 * run.Dml + 0.3 * run.Ssl, run.Loss, 4);
        Assert.True(run.Projector > 0);
        Assert.True(run.LabelTree > 0);
    }

    [Fact]
    public void The_grid_runs_lambda_and_tau_for_every_method_with_a_label_tree_and_skips_SSL_only_at_lambda_0()
    {
        var parameters = new Text2TreeGridParameters("data", new Text2TreeOptions(), [Text2TreeMethods.Text2Tree, Text2TreeMethods.Text2TreeSsl, Text2TreeMethods.Finetune],
            [1, 2], [0, 0.01], [0.5, 1]);
        var runs = Text2TreeGridJob.Runs(parameters);
        Assert.Equal(2 * 2 * 2, runs.Count(r => r.Method == Text2TreeMethods.Text2Tree));
        Assert.Equal(1 * 2 * 2, runs.Count(r => r.Method == Text2TreeMethods.Text2TreeSsl));
        Assert.All(runs.Where(r => r.Method == Text2TreeMethods.Text2TreeSsl), r => Assert.Equal(0.01, r.Lambda));
        Assert.Equal(2, runs.Count(r => r.Method == Text2TreeMethods.Finetune));
        Assert.Equal(runs.Count, runs.Select(Text2TreeGridJob.ShardId).Distinct().Count());
        Assert.Contains("text2tree-ssl-l0.01-t0.5-s2", runs.Select(Text2TreeGridJob.ShardId));
    }

    [Fact]
    public void A_grid_of_SSL_only_at_lambda_0_alone_is_refused_with_the_fix()
    {
        var parameters = new Text2TreeGridParameters("data", new Text2TreeOptions(), [Text2TreeMethods.Text2TreeSsl], [1], [0], [1]);
        Assert.Empty(Text2TreeGridJob.Runs(parameters));
        var error = Assert.Throws<UserInputException>(() => new Text2TreeGridJob().CheckOptions(parameters));
        Assert.Contains("use finetune", error.Message);
    }
}
