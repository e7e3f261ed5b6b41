using System.CommandLine;
using Babel.Client.Commands;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;

namespace Babel.UnitTests.Experts;

/// <summary><c>babel moefy</c> through its own command (the integrator registers it in the root).</summary>
public class MoefyCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var root = new RootCommand { MoefyCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        var code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (code, output.ToString(), error.ToString());
    }

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
        var (code, output, error) = Run("moefy", "--model", model, "--experts", "4", "--seed", "3");
        Assert.True(code == 0, error);
        var partition = ExpertPartition.Load(model);
        Assert.Equal((4, MoEfication.BalancedKMeans, 3L, 2), (partition.Experts, partition.Method, partition.Seed, partition.Layers));
        Assert.Contains("random", output, StringComparison.Ordinal);
        Assert.Contains("layer 2/2 done", error, StringComparison.Ordinal);
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
        var error = Assert.Throws<UserInputException>(() => Run("moefy", "--model", model, "--experts", experts, "--method", method));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(model, ExpertPartition.FileName)));
    }
}
