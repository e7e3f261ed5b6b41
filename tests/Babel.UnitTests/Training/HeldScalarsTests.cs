using Babel.Modeling.Runtime;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

/// <summary>
/// <see cref="HeldScalars.AdamW"/> against TorchSharp's own <see cref="AdamW"/>, the independent implementation it must equal:
/// two parameter groups (with and without weight decay, different learning rates), learning rates changed between steps
/// as the schedules do, a parameter without a gradient, ten steps of random gradients: the same weights, moments and
/// step counts bit for bit, and the same checkpoint bytes.
/// </summary>
public class HeldScalarsTests
{
    [Fact]
    public void Steps_equal_TorchSharps_AdamW_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        var (ours, oursGroups) = Parameters();
        var (theirs, theirsGroups) = Parameters();
        using var held = new HeldScalars.AdamW(oursGroups, lr: 3e-3, beta1: 0.9, beta2: 0.95, weightDecay: 0.1);
        using var reference = optim.AdamW(theirsGroups, lr: 3e-3, beta1: 0.9, beta2: 0.95, weight_decay: 0.1);
        var generator = new TorchSharp.torch.Generator(5);
        for (var step = 1; step <= 10; step++)
        {
            foreach (var (optimizer, parameters) in new (AdamW, Parameter[])[] { (held, ours), (reference, theirs) })
            {
                var lr = 3e-3 * (1 - 0.05 * step);
                var groups = optimizer.ParamGroups.ToList();
                groups[0].LearningRate = lr;
                groups[1].LearningRate = lr / 10;
            }
            for (var i = 0; i < ours.Length - 1; i++)
            {
                var gradient = randn(ours[i].shape, generator: generator);
                ours[i].grad = gradient.clone();
                theirs[i].grad = gradient.clone();
            }
            held.step();
            reference.step();
        }

        for (var i = 0; i < ours.Length; i++) Assert.True(Same(ours[i], theirs[i]), $"parameter {i} differs");
        Assert.False(Same(ours[0], Parameters().Tensors[0]), "the optimizer did not move the weights");
        Assert.True(Same(ours[^1], Parameters().Tensors[^1]), "a parameter without a gradient moved");
        // The same checkpoint bytes, and checkpoints written by either load into the other (resuming a run written before this optimizer existed).
        var (_, loadedGroups) = Parameters();
        using var fromReference = new HeldScalars.AdamW(loadedGroups, lr: 3e-3);
        using (var reader = new BinaryReader(new MemoryStream(Bytes(reference)))) fromReference.load_state_dict(reader);
        Assert.Equal(Bytes(reference), Bytes(held));
        Assert.Equal(Bytes(held), Bytes(fromReference));
    }

    private static (Parameter[] Tensors, AdamW.ParamGroup[] Groups) Parameters()
    {
        var generator = new TorchSharp.torch.Generator(1);
        var tensors = new[] { new Parameter(randn([16, 8], generator: generator)), new Parameter(randn([8], generator: generator)), new Parameter(randn([4, 4], generator: generator)) };
        return (tensors, [
            new AdamW.ParamGroup([tensors[0]], new AdamW.Options { weight_decay = 0.1 }),
            new AdamW.ParamGroup([tensors[1], tensors[2]], new AdamW.Options { weight_decay = 0 }),
        ]);
    }

    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    private static byte[] Bytes(AdamW optimizer)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) optimizer.save_state_dict(writer);
        return stream.ToArray();
    }
}
