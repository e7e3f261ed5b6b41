using Babel.Modeling.Experts;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

public class SparseExpertActivationTests
{
    /// <summary>The reference: per token, plain loops score the experts, keep the top K and zero the other neurons.</summary>
    private sealed class NaiveTopK(ExpertPartition partition, int k, bool oracle) : IFeedForwardHook
    {
        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate)
        {
            var width = partition.IntermediateSize;
            var gates = gate.contiguous().data<float>().ToArray();
            var values = intermediate.contiguous().data<float>().ToArray();
            var experts = partition.ExpertOfNeuron[layer];
            for (var token = 0; token < values.Length / width; token++)
            {
                var scores = new double[partition.Experts];
                for (var n = 0; n < width; n++)
                {
                    scores[experts[n]] += oracle ? Math.Abs(values[token * width + n]) : gates[token * width + n] / (double)partition.NeuronsPerExpert;
                }
                var kept = Enumerable.Range(0, partition.Experts).OrderByDescending(e => scores[e]).Take(k).ToHashSet();
                for (var n = 0; n < width; n++)
                {
                    if (!kept.Contains(experts[n])) values[token * width + n] = 0;
                }
            }
            return tensor(values, intermediate.shape);
        }
    }

    private static readonly Tensor _ids = tensor(new long[] { 1, 5, 9, 17, 33, 2, 40, 41, 7, 3, 12, 60 }, [2, 6]);

    [Theory]
    [InlineData(SparseExpertActivation.CentroidRouter, 2)]
    [InlineData(SparseExpertActivation.CentroidRouter, 5)]
    [InlineData(SparseExpertActivation.OracleRouter, 1)]
    [InlineData(SparseExpertActivation.OracleRouter, 3)]
    public void Top_k_routing_equals_a_naive_per_token_loop(string router, int k)
    {
        var config = TinyModels.Config();
        using var model = TinyModels.Create(config);
        var partition = MoEfication.Partition(model, 6, MoEfication.BalancedKMeans, seed: 1);
        using var sparse = new SparseExpertActivation(model, partition, k, router);
        using var guard = no_grad();
        // Centroid routing runs the sparse per-expert computation here; the oracle runs the dense FFN and masks.
        var routed = model.Forward(_ids, hook: sparse);
        var reference = model.Forward(_ids, hook: new NaiveTopK(partition, k, router == SparseExpertActivation.OracleRouter));
        Assert.True(routed.allclose(reference, rtol: 1e-4, atol: 1e-4), $"max difference {(routed - reference).abs().max().item<float>()}");
        Assert.False(routed.allclose(model.Forward(_ids), rtol: 1e-3, atol: 1e-3), "fewer experts must change the logits");
        Assert.Equal((double)k / 6, sparse.ComputeFraction);
    }

    [Fact]
    public void Every_expert_routed_is_the_dense_model_and_the_decoder_path_agrees()
    {
        var config = TinyModels.Config();
        using var model = TinyModels.Create(config);
        var partition = MoEfication.Partition(model, 4, MoEfication.Random, seed: 2);
        using var all = new SparseExpertActivation(model, partition, 4, SparseExpertActivation.CentroidRouter);
        using (no_grad())
        {
            var dense = model.Forward(_ids);
            Assert.True(model.Forward(_ids, hook: all).allclose(dense, rtol: 1e-4, atol: 1e-5));
        }
        // Generation: the KV-cache decoder applies the routing as a mask, the full forward computes it sparsely.
        using var two = new SparseExpertActivation(model, partition, 2, SparseExpertActivation.CentroidRouter);
        var options = new SamplingOptions { MaxNewTokens = 6, Temperature = 0 };
        List<int[]> prompts = [[1, 5, 9], [1, 17, 4]];
        Assert.Equal(TextGenerator.Generate(model, prompts, options, useCache: false, hook: two), TextGenerator.Generate(model, prompts, options, hook: two));
    }

    [Fact]
    public void Bad_router_or_k_is_refused()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = ExpertPartition.Contiguous(2, 48, 4);
        Assert.Contains("outside 1..4", Assert.Throws<UserInputException>(() => new SparseExpertActivation(model, partition, 5, "centroid")).Message, StringComparison.Ordinal);
        Assert.Contains("Unknown router", Assert.Throws<UserInputException>(() => new SparseExpertActivation(model, partition, 2, "learned")).Message, StringComparison.Ordinal);
    }
}
