using Babel.Modeling.Benchmarks;
using Babel.Modeling.Checkpoints;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

/// <summary>The llama2.c exporter of <c>babel bench decode</c>, read back by the independent importer.</summary>
public sealed class Llama2cExportTests : IDisposable
{
    private readonly ScratchFolder _scratch = new();

    [Theory]
    [InlineData(true, 2)]
    [InlineData(false, 4)]
    public void An_exported_model_reads_back_as_the_same_tensors(bool tied, int keyValueHeads)
    {
        var config = TinyModels.Config(tied: tied, heads: 4, keyValueHeads: keyValueHeads);
        using var model = TinyModels.Create(config);
        var path = _scratch.Combine("model.bin");
        Llama2cExport.WriteCheckpoint(model, path);
        using var read = Llama2cCheckpoint.Read(path);
        Assert.Equal(config.HiddenSize, read.Config.HiddenSize);
        Assert.Equal(tied, read.Config.TieWordEmbeddings);
        var expected = model.StateDict();
        Assert.Equal(expected.Keys.Order(), read.Tensors.Keys.Order());
        foreach (var (name, tensor) in expected) Assert.True(tensor.equal(read.Tensors[name]).all().item<bool>(), $"{name} differs after the round trip");
    }

    [Fact]
    public void The_rotary_reordering_inverts_the_importers()
    {
        using var weight = randn(4 * 8, 5);
        using var interleaved = Llama2cExport.HalfToInterleavedRotary(weight, 4, 8);
        using var back = Llama2cCheckpoint.InterleavedToHalfRotary(interleaved, 4, 8);
        Assert.True(back.equal(weight).all().item<bool>());
        // Interleaved row 2i is half-rotary row i; row 2i + 1 is row h/2 + i (within a head).
        Assert.True(interleaved[2].equal(weight[1]).all().item<bool>() && interleaved[3].equal(weight[4 + 1]).all().item<bool>());
    }

    public void Dispose() => _scratch.Dispose();
}
