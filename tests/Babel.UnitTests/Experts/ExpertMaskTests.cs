using Babel.Modeling.Experts;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

public class ExpertMaskTests
{
    private static readonly long[] _tokens = [1, 17, 33, 5, 9, 42, 7, 60];

    [Theory]
    [InlineData(MoEfication.BalancedKMeans, 4)]
    [InlineData(MoEfication.Random, 6)]
    [InlineData(MoEfication.Random, 48)]
    public void The_MoE_forward_with_every_expert_active_gives_the_dense_logits(string method, int experts)
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, experts, method, seed: 2);
        using var guard = no_grad();
        using var input = tensor(_tokens).reshape(2, 4);
        using var dense = model.Forward(input);
        using var mask = ExpertMask.AllActive(partition);
        using var moe = model.Forward(input, hook: mask);
        Assert.True(dense.allclose(moe, rtol: 0, atol: 1e-5), $"max difference {(dense - moe).abs().max().item<float>()}");
    }

    [Fact]
    public void Switching_an_expert_off_zeroes_exactly_its_neurons()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = MoEfication.Partition(model, 4, MoEfication.BalancedKMeans, seed: 2);
        using var guard = no_grad();
        using var input = tensor(_tokens).unsqueeze(0);
        using var expertMask = ones(2, 4);
        expertMask[1, 2] = tensor(0f);
        using var hook = new ExpertMask(partition, expertMask);
        using var moe = model.Forward(input, hook: hook);
        var neuronMask = partition.ExpertOfNeuron[1].Select(e => e == 2 ? 0f : 1f).ToArray();
        using var reference = model.Forward(input, hook: new NeuronMask(1, tensor(neuronMask)));
        using var dense = model.Forward(input);
        Assert.True(reference.allclose(moe, rtol: 0, atol: 1e-5));
        Assert.False(dense.allclose(moe, rtol: 0, atol: 1e-3), "switching an expert off changes the logits");
    }

    [Fact]
    public void A_mask_of_the_wrong_shape_is_refused()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        var partition = ExpertPartition.Contiguous(2, 48, 4);
        using var wrong = ones(2, 3);
        Assert.Throws<ArgumentException>(() => new ExpertMask(partition, wrong));
    }

    /// <summary>The reference: multiplies one layer's neurons by a per-neuron mask, without any expert grouping.</summary>
    private sealed class NeuronMask(int layer, Tensor mask) : IFeedForwardHook
    {
        public Tensor OnIntermediate(int at, Tensor gate, Tensor intermediate) => at == layer ? intermediate * mask : intermediate;
    }
}
