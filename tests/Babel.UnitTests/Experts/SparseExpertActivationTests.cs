using Babel.Modeling.Experts;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.UnitTests.Experts;

public class SparseExpertActivationTests
{
    /// <summary>The reference of the oracle and gate-mean routers: per token, plain loops score the experts, keep the top K and zero the other neurons.</summary>
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

    /// <summary>
    /// The centroid router's reference, from the weights with plain loops: c_g,e and c_u,e are the means of e's neurons'
    /// [gate row ‖ up row] / ‖[gate row ‖ up row]‖ halves; per token the K experts with the largest |SiLU(h·c_g)·(h·c_u)|
    /// run, neuron by neuron.
    /// </summary>
    private sealed class NaiveCentroid(CausalLanguageModel model, ExpertPartition partition, int k) : IFeedForwardHook
    {
        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate) => throw new InvalidOperationException("the reference computes the whole FFN");

        public Tensor? ComputeFeedForward(int layer, FeedForward feedForward, Tensor hidden)
        {
            var mlp = model.Layers[layer].Mlp;
            var (width, d) = (partition.IntermediateSize, (int)hidden.shape[^1]);
            var g = mlp.GateProj.weight!.contiguous().data<float>().ToArray();
            var u = mlp.UpProj.weight!.contiguous().data<float>().ToArray();
            var down = mlp.DownProj.weight!.contiguous().data<float>().ToArray();
            var x = hidden.contiguous().data<float>().ToArray();
            var expertOf = partition.ExpertOfNeuron[layer];
            var (cg, cu) = (new double[partition.Experts, d], new double[partition.Experts, d]);
            for (var n = 0; n < width; n++)
            {
                var norm = 0.0;
                for (var j = 0; j < d; j++) norm += (double)g[n * d + j] * g[n * d + j] + (double)u[n * d + j] * u[n * d + j];
                norm = Math.Sqrt(norm);
                for (var j = 0; j < d; j++)
                {
                    cg[expertOf[n], j] += g[n * d + j] / norm / partition.NeuronsPerExpert;
                    cu[expertOf[n], j] += u[n * d + j] / norm / partition.NeuronsPerExpert;
                }
            }
            static double Silu(double v) => v / (1 + Math.Exp(-v));
            var output = new float[x.Length];
            for (var token = 0; token < x.Length / d; token++)
            {
                var scores = new double[partition.Experts];
                for (var e = 0; e < partition.Experts; e++)
                {
                    double hg = 0, hu = 0;
                    for (var j = 0; j < d; j++) (hg, hu) = (hg + x[token * d + j] * cg[e, j], hu + x[token * d + j] * cu[e, j]);
                    scores[e] = Math.Abs(Silu(hg) * hu);
                }
                var kept = Enumerable.Range(0, partition.Experts).OrderByDescending(e => scores[e]).Take(k).ToHashSet();
                for (var n = 0; n < width; n++)
                {
                    if (!kept.Contains(expertOf[n])) continue;
                    double gate = 0, up = 0;
                    for (var j = 0; j < d; j++) (gate, up) = (gate + x[token * d + j] * g[n * d + j], up + x[token * d + j] * u[n * d + j]);
                    var activation = Silu(gate) * up;
                    for (var j = 0; j < d; j++) output[token * d + j] += (float)(activation * down[j * width + n]);
                }
            }
            return tensor(output, hidden.shape);
        }
    }

    private static readonly Tensor _ids = tensor(new long[] { 1, 5, 9, 17, 33, 2, 40, 41, 7, 3, 12, 60 }, [2, 6]);

    [Theory]
    [InlineData(SparseExpertActivation.CentroidRouter, 2)]
    [InlineData(SparseExpertActivation.CentroidRouter, 5)]
    [InlineData(SparseExpertActivation.GateMeanRouter, 2)]
    [InlineData(SparseExpertActivation.OracleRouter, 1)]
    [InlineData(SparseExpertActivation.OracleRouter, 3)]
    public void Top_k_routing_equals_a_naive_per_token_loop(string router, int k)
    {
        var config = TinyModels.Config();
        using var model = TinyModels.Create(config);
        var partition = MoEfication.Partition(model, 6, MoEfication.BalancedKMeans, seed: 1);
        using var sparse = new SparseExpertActivation(model, partition, k, router);
        using var guard = no_grad();
        // Centroid and gate-mean routing run the sparse per-expert computation here; the oracle runs the dense FFN and masks.
        var routed = model.Forward(_ids, hook: sparse);
        var reference = model.Forward(_ids, hook: router == SparseExpertActivation.CentroidRouter
            ? new NaiveCentroid(model, partition, k)
            : new NaiveTopK(partition, k, router == SparseExpertActivation.OracleRouter));
        Assert.True(routed.allclose(reference, rtol: 1e-4, atol: 1e-4), $"max difference {(routed - reference).abs().max().item<float>()}");
        Assert.False(routed.allclose(model.Forward(_ids), rtol: 1e-3, atol: 1e-3), "fewer experts must change the logits");
        Assert.Equal((double)k / 6, sparse.ComputeFraction);
        if (router == SparseExpertActivation.CentroidRouter)
        {
            // The reference tells the readings apart: the earlier mean-gate-row router chooses other experts here.
            using var gateMean = new SparseExpertActivation(model, partition, k, SparseExpertActivation.GateMeanRouter);
            Assert.False(model.Forward(_ids, hook: gateMean).allclose(reference, rtol: 1e-3, atol: 1e-3), "gate-mean must differ from the centroid router");
        }
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
    public void Centroid_masked_path_chooses_as_the_sparse_path()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, 6, MoEfication.BalancedKMeans, seed: 4);
        using var centroid = new SparseExpertActivation(model, partition, 2, SparseExpertActivation.CentroidRouter);
        using var guard = no_grad();
        // OnIntermediate scores from the dense FFN's gate and SiLU(gate)·up (the KV-cache decoder's path), ComputeFeedForward from the input.
        var hidden = randn(3, 5, model.Config.HiddenSize, generator: new TorchSharp.torch.Generator(11));
        var mlp = model.Layers[1].Mlp;
        var gate = hidden.matmul(mlp.GateProj.weight!.t());
        var masked = mlp.DownProj.forward(centroid.OnIntermediate(1, gate, F.silu(gate) * hidden.matmul(mlp.UpProj.weight!.t())));
        var sparse = centroid.ComputeFeedForward(1, mlp, hidden)!;
        Assert.True(masked.allclose(sparse, rtol: 1e-4, atol: 1e-5), $"max difference {(masked - sparse).abs().max().item<float>()}");
    }

    [Fact]
    public void Frequency_router_runs_the_kept_experts_as_the_pruning_mask_does_and_all_experts_is_dense()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, 4, MoEfication.BalancedKMeans, seed: 5);
        bool[][] pruned = [[true, false, false, true], [false, true, true, false]];
        using var frequency = new SparseExpertActivation(model, partition, 2, SparseExpertActivation.FrequencyRouter, pruned);
        using var mask = new ExpertMask(partition, tensor(pruned.SelectMany(l => l.Select(p => p ? 0f : 1f)).ToArray(), [2, 4]));
        using var all = new SparseExpertActivation(model, partition, 4, SparseExpertActivation.FrequencyRouter, [[false, false, false, false], [false, false, false, false]]);
        using var guard = no_grad();
        // A second path: the dense FFN with the pruned experts' neurons zeroed.
        var routed = model.Forward(_ids, hook: frequency);
        Assert.True(routed.allclose(model.Forward(_ids, hook: mask), rtol: 1e-4, atol: 1e-5));
        Assert.False(routed.allclose(model.Forward(_ids), rtol: 1e-3, atol: 1e-3), "two of four experts must change the logits");
        Assert.True(model.Forward(_ids, hook: all).allclose(model.Forward(_ids), rtol: 1e-4, atol: 1e-5));
        Assert.Throws<ArgumentException>(() => new SparseExpertActivation(model, partition, 3, SparseExpertActivation.FrequencyRouter, pruned));
        Assert.Throws<ArgumentException>(() => new SparseExpertActivation(model, partition, 2, SparseExpertActivation.FrequencyRouter));
    }

    [Fact]
    public void Frequency_masks_keep_each_languages_top_k_of_the_profile()
    {
        // Counts with ties; ties keep the higher expert id, as frequency pruning switches off the lower first.
        long[][] eng = [[5, 9, 1, 9, 0, 3], [2, 2, 2, 2, 7, 1]];
        long[][] fra = [[0, 0, 4, 8, 8, 1], [9, 3, 3, 0, 5, 6]];
        var profile = new ActivationProfile("m", 2, 6, "topk:2", new Dictionary<string, LanguageActivations>
        {
            ["eng"] = new(10, eng), ["fra"] = new(20, fra),
        });
        var request = new SparseRequest([1, 2, 3, 6], [SparseExpertActivation.FrequencyRouter], ["eng", "fra"], "heldout");
        var masks = SparseActivationStudy.FrequencyMasks(profile, request);
        Assert.Equal(8, masks.Count);
        var partition = ExpertPartition.Contiguous(2, 12, 6);
        foreach (var mask in masks)
        {
            var counts = mask.Language == "eng" ? eng : fra;
            var decoded = ExpertVariant.Decode(mask.Pruned, partition);
            for (var layer = 0; layer < 2; layer++)
            {
                // Plain loop: pick the largest count K times (a tie goes to the higher id).
                var kept = new bool[6];
                for (var pick = 0; pick < mask.TopK; pick++)
                {
                    var best = -1;
                    for (var e = 0; e < 6; e++)
                    {
                        if (!kept[e] && (best < 0 || counts[layer][e] >= counts[layer][best])) best = e;
                    }
                    kept[best] = true;
                }
                Assert.Equal(kept.Select(k => !k), decoded[layer]);
            }
        }
        Assert.Equal(new string('0', 12), masks.Single(m => m.Language == "fra" && m.TopK == 6).Pruned);
        var variant = SparseActivationStudy.Variants("eng", request, 6, masks).Single(v => v.Name == "eng/frequency/2");
        Assert.Equal(masks.Single(m => m.Language == "eng" && m.TopK == 2).Pruned, variant.Pruned);
        Assert.Contains("--run", Assert.Throws<UserInputException>(() => SparseActivationStudy.Variants("eng", request, 6).ToList()).Message, StringComparison.Ordinal);
        // The job refuses a frequency study whose masks do not cover every (language, K).
        var job = new Grains.Experts.SparseActivationJob();
        job.CheckOptions(new Grains.Experts.SparseActivationParameters("models/m", "corpora/c", request, FrequencyMasks: masks));
        Assert.Contains("one mask per (language, K)", Assert.Throws<UserInputException>(() =>
            job.CheckOptions(new Grains.Experts.SparseActivationParameters("models/m", "corpora/c", request, FrequencyMasks: masks.Skip(1).ToList()))).Message, StringComparison.Ordinal);
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
