using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Transformer;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Experts;

/// <summary><c>babel moefy</c> through its own command (the integrator registers it in the root).</summary>
public class MoefyCommandTests
{

    private static string WriteModel(ScratchFolder scratch)
    {
        var directory = scratch.Combine("model");
        var config = TinyModels.Config();
        using var model = TinyModels.Create(config);
        ModelCheckpoint.Save(directory, config, model.StateDict());
        return directory;
    }

    [Fact]
    public void Moefy_writes_experts_json_beside_the_model_and_compares_with_random()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var (code, output, error) = Run("moefy", "--model", model, "--experts", "4", "--seed", "3", "--store", scratch.Combine("store"));
        Assert.True(code == 0, error);
        var partition = ExpertPartition.Load(model);
        Assert.Equal((4, MoEfication.BalancedKMeans, 3L, 2), (partition.Experts, partition.Method, partition.Seed, partition.Layers));
        Assert.Contains("random", output, StringComparison.Ordinal);
        Assert.Contains("2/2 shards done", error, StringComparison.Ordinal);
        // Layers partitioned as shards of a job equal the whole model partitioned in this process.
        using (var loaded = CausalLanguageModel.Load(model))
        {
            Assert.Equal(MoEfication.Partition(loaded, 4, MoEfication.BalancedKMeans, 3).ExpertOfNeuron, partition.ExpertOfNeuron);
        }
        // Two header lines, the column line, one line per layer and the mean.
        Assert.Equal(3 + 2 + 1, output.Trim().Split('\n').Length);
    }

    [Theory]
    [InlineData("5", "balanced-kmeans", "divide")]
    [InlineData("4", "spectral", "balanced-kmeans, random")]
    [InlineData("4", "cooccurrence", "not implemented")]
    public void Bad_input_is_one_sentence_and_writes_nothing(string experts, string method, string expected)
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var (code, _, error) = Run("moefy", "--model", model, "--experts", experts, "--method", method, "--store", scratch.Combine("store"));
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(model, ExpertPartition.FileName)));
    }
}
