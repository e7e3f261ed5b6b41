using System.Buffers.Binary;
using System.Text;
using Babel.Modeling.Checkpoints;
using Babel.Storage;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

/// <summary>Inputs shared by the checkpoint tests: hand-built safetensors bytes, tiny configs, the real stories260K.</summary>
public static class CheckpointTestFiles
{
    /// <summary>The read-only shared stories260K.bin (override the folder with BABEL_SHARED_DIR).</summary>
    public static string Stories260K
    {
        get
        {
            var shared = Environment.GetEnvironmentVariable("BABEL_SHARED_DIR") ?? FindSharedBesideRepository();
            return System.IO.Path.Combine(shared, "models", "stories260K", "stories260K.bin");
        }
    }

    // The shared folder sits beside the repository (ARCHITECTURE.md: ../shared).
    private static string FindSharedBesideRepository()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (System.IO.File.Exists(System.IO.Path.Combine(directory.FullName, "Directory.Build.props")))
            {
                return System.IO.Path.Combine(directory.Parent!.FullName, "shared");
            }
        }
        throw new InvalidOperationException("Cannot find the repository root above " + AppContext.BaseDirectory);
    }

    /// <summary>Writes a safetensors file from a literal header and data buffer, with no validation.</summary>
    public static void WriteRaw(string path, string headerJson, byte[] data, long? declaredHeaderLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        using var stream = System.IO.File.Create(path);
        var length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(declaredHeaderLength ?? header.Length));
        stream.Write(length);
        stream.Write(header);
        stream.Write(data);
    }

    public static ModelConfig TinyConfig(bool tied = false) => new ModelConfig
    {
        HiddenSize = 8,
        IntermediateSize = 12,
        NumHiddenLayers = 2,
        NumAttentionHeads = 2,
        NumKeyValueHeads = 1,
        HeadDim = 4,
        VocabSize = 16,
        TieWordEmbeddings = tied,
    }.Validate("tiny test config");

    /// <summary>Random tensors with exactly the shapes <paramref name="config"/> expects.</summary>
    public static Dictionary<string, Tensor> RandomTensors(ModelConfig config, int seed)
    {
        torch.random.manual_seed(seed);
        return config.ExpectedTensors().ToDictionary(e => e.Name, e => randn(e.Shape));
    }

    public static void DisposeAll(IReadOnlyDictionary<string, Tensor> tensors)
    {
        foreach (var tensor in tensors.Values) tensor.Dispose();
    }

    public static void AssertBitIdentical(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, tensor) in expected)
        {
            Assert.Equal(ScalarType.Float32, actual[name].dtype);
            Assert.True(BitIdentical(tensor, actual[name]), $"{name} differs after the round trip");
        }
    }

    /// <summary>Same dtype, same shape and the same bytes (stricter than torch.equal: tells -0 from 0 and compares NaNs).</summary>
    public static bool BitIdentical(Tensor expected, Tensor actual)
    {
        if (expected.dtype != actual.dtype || !expected.shape.SequenceEqual(actual.shape)) return false;
        using var a = expected.contiguous();
        using var b = actual.contiguous();
        using var elementwise = a.eq(b).all();
        return a.bytes.SequenceEqual(b.bytes) && elementwise.item<bool>();
    }

    public static UserInputException AssertUserError(Action action, params string[] fragments)
    {
        var error = Assert.Throws<UserInputException>(action);
        foreach (var fragment in fragments) Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
        return error;
    }
}
