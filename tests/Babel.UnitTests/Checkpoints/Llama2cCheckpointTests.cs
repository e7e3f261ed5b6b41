using System.CommandLine;
using Babel.Client.Commands;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Xunit;
using static Babel.UnitTests.Checkpoints.CheckpointTestFiles;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

public sealed class Llama2cCheckpointTests : IDisposable
{
    private const int Bos = 1;
    private readonly ScratchFolder _scratch = new();

    public Llama2cCheckpointTests() => TorchRuntime.Initialize();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Stories260K_converts_to_the_expected_config_and_shapes()
    {
        using var checkpoint = Llama2cCheckpoint.Read(Stories260K);
        var config = checkpoint.Config;
        Assert.Equal(ModelConfig.LlamaArchitecture, config.Architecture);
        Assert.Equal((64, 172, 5, 8, 4, 8, 512, 512), (config.HiddenSize, config.IntermediateSize, config.NumHiddenLayers,
            config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.VocabSize, config.MaxPositionEmbeddings));
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal((1e-5, 10000.0, 1, 2), (config.RmsNormEps, config.RopeTheta, config.BosTokenId, config.EosTokenId));
        Assert.DoesNotContain(ModelCheckpoint.LmHeadName, checkpoint.Tensors.Keys);
        Assert.Equal(config.ExpectedTensors().Select(e => e.Name), checkpoint.Tensors.Keys);
        foreach (var (name, shape) in config.ExpectedTensors())
        {
            Assert.Equal(shape, checkpoint.Tensors[name].shape);
        }
        Assert.Equal(new long[] { 32, 64 }, checkpoint.Tensors["model.layers.4.self_attn.k_proj.weight"].shape);
    }

    [Fact]
    public void Unpermuted_tensors_are_the_file_floats_in_order()
    {
        // Independent of the converter: the embedding starts right after the header, rms_att right after it.
        var bytes = File.ReadAllBytes(Stories260K);
        float At(long index) => BitConverter.ToSingle(bytes, (int)(Llama2cHeader.ByteLength + 4 * index));
        using var checkpoint = Llama2cCheckpoint.Read(Stories260K);
        var embedding = checkpoint.Tensors["model.embed_tokens.weight"];
        Assert.Equal(At(0), embedding[0, 0].item<float>());
        Assert.Equal(At(511 * 64 + 63), embedding[511, 63].item<float>());
        Assert.Equal(At(512 * 64 + 64 + 5), checkpoint.Tensors["model.layers.1.input_layernorm.weight"][5].item<float>());
    }

    [Fact]
    public void Query_rows_move_from_interleaved_pairs_to_halves_within_each_head()
    {
        // Two heads of size 4 over one column: llama2.c rows hold (head·10 + row).
        using var weight = tensor(new float[] { 0, 1, 2, 3, 10, 11, 12, 13 }).reshape(8, 1);
        using var permuted = Llama2cCheckpoint.InterleavedToHalfRotary(weight, heads: 2, headSize: 4);
        Assert.Equal([0f, 2f, 1f, 3f, 10f, 12f, 11f, 13f], permuted.data<float>().ToArray());
    }

    [Fact]
    public void Converted_folder_loads_bit_identical_to_the_direct_read()
    {
        var folder = _scratch.Combine("stories260K");
        var config = Llama2cCheckpoint.Convert(Stories260K, folder);
        using var direct = Llama2cCheckpoint.Read(Stories260K);
        using var loaded = ModelCheckpoint.Load(folder);
        Assert.Equal(config, loaded.Config);
        AssertBitIdentical(direct.Tensors, loaded.Tensors);
    }

    [Fact]
    public void Truncated_bin_reports_expected_and_actual_bytes()
    {
        var truncated = _scratch.Combine("cut.bin");
        var bytes = File.ReadAllBytes(Stories260K);
        File.WriteAllBytes(truncated, bytes[..100_000]);
        AssertUserError(() => Llama2cCheckpoint.Read(truncated), truncated, "truncated", $"needs {bytes.Length} bytes", "has 100000");
    }

    [Fact]
    public void Absurd_header_is_a_user_error()
    {
        var path = _scratch.Combine("absurd.bin");
        var header = new[] { 64, 172, 5, 7, 4, 512, 512 }.SelectMany(BitConverter.GetBytes).ToArray();
        File.WriteAllBytes(path, header);
        AssertUserError(() => Llama2cCheckpoint.Read(path), path, "dim 64 is not a multiple of n_heads 7");
    }

    [Fact]
    public void Separate_classifier_after_a_negative_vocab_size_becomes_lm_head()
    {
        // stories260K with its sign flipped and a classifier appended: the classifier must be read from the end.
        var withHead = File.ReadAllBytes(Stories260K);
        BitConverter.GetBytes(-512).CopyTo(withHead, 20);
        var classifier = Enumerable.Range(0, 512 * 64).Select(i => (float)i).SelectMany(BitConverter.GetBytes);
        var path = _scratch.Combine("untied.bin");
        File.WriteAllBytes(path, withHead.Concat(classifier).ToArray());

        using var checkpoint = Llama2cCheckpoint.Read(path);
        Assert.False(checkpoint.Config.TieWordEmbeddings);
        var head = checkpoint.Tensors[ModelCheckpoint.LmHeadName];
        Assert.Equal(new long[] { 512, 64 }, head.shape);
        Assert.Equal(64f * 3 + 5, head[3, 5].item<float>());
    }

    [Fact]
    public void Llama2c_reference_greedy_continuation_is_finite_varied_and_confident()
    {
        var reference = new Llama2cReferenceForward(Stories260K);
        var story = reference.GreedyContinuation(Bos, 200);
        var tokens = story.Select(s => s.Token).ToArray();

        Assert.All(story, s => Assert.True(float.IsFinite(s.Probability) && s.Probability > 0));
        Assert.All(tokens, t => Assert.InRange(t, 0, reference.VocabSize - 1));
        Assert.True(tokens.Distinct().Count() >= 40, $"greedy text is degenerate: {string.Join(" ", tokens)}");
        // A trained model is far surer of its own greedy text than uniform (1/512 = 0.002).
        var meanProbability = story.Average(s => s.Probability);
        Assert.True(meanProbability > 0.2, $"mean probability {meanProbability}");
    }

    [Fact]
    public void Llama2c_reference_is_causal_and_sensitive_to_token_order()
    {
        var reference = new Llama2cReferenceForward(Stories260K);
        var abc = reference.Logits([Bos, 300, 400, 350]);
        var abd = reference.Logits([Bos, 300, 400, 500]);
        var bac = reference.Logits([Bos, 400, 300, 350]);
        // A later token never changes an earlier position's logits.
        Assert.Equal(abc[2], abd[2]);
        Assert.NotEqual(abc[3], abd[3]);
        // Swapping earlier tokens changes the last position only through RoPE's positions: it must change something.
        Assert.True(abc[3].Zip(bac[3]).Max(v => Math.Abs(v.First - v.Second)) > 1e-3);
        Assert.All(abc.SelectMany(row => row), value => Assert.True(float.IsFinite(value)));
    }

    [Fact]
    public void Hugging_Face_forward_on_converted_tensors_matches_the_llama2c_reference()
    {
        var reference = new Llama2cReferenceForward(Stories260K);
        // A greedy story from BOS, so attention sees the kind of text the model was trained on.
        var tokens = new List<int> { Bos };
        tokens.AddRange(reference.GreedyContinuation(Bos, 15).Select(s => s.Token));
        var expected = reference.Logits([.. tokens]);

        using var checkpoint = Llama2cCheckpoint.Read(Stories260K);
        var actual = HuggingFaceReferenceForward.Logits(checkpoint.Config, checkpoint.Tensors, [.. tokens]);

        var maxDifference = expected.Zip(actual).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
        Assert.True(maxDifference < 1e-4, $"max |Δlogit| = {maxDifference}");
    }

    [Fact]
    public void Hugging_Face_forward_on_unpermuted_tensors_disagrees_so_the_comparison_can_fail()
    {
        var reference = new Llama2cReferenceForward(Stories260K);
        int[] tokens = [Bos, 400, 30, 200, 77, 9];
        var expected = reference.Logits(tokens);
        using var checkpoint = Llama2cCheckpoint.Read(Stories260K);
        var unpermuted = checkpoint.Tensors.ToDictionary(p => p.Key, p => HuggingFaceReferenceForward.ToArray(p.Value));
        // Undo the permutation for layer 0's queries only: the result must differ beyond position 0.
        var raw = File.ReadAllBytes(Stories260K);
        var wqOffset = Llama2cHeader.ByteLength + 4 * (512 * 64 + 5 * 64);
        unpermuted["model.layers.0.self_attn.q_proj.weight"] = Enumerable.Range(0, 64 * 64).Select(i => BitConverter.ToSingle(raw, wqOffset + 4 * i)).ToArray();
        var actual = HuggingFaceReferenceForward.Logits(checkpoint.Config, unpermuted, tokens);
        Assert.Equal(expected[0], actual[0], (a, b) => Math.Abs(a - b) < 1e-4);
        Assert.True(expected[^1].Zip(actual[^1]).Max(v => Math.Abs(v.First - v.Second)) > 1e-2);
    }

    [Fact]
    public void Convert_command_writes_a_loadable_folder()
    {
        var folder = _scratch.Combine("converted");
        var output = new StringWriter();
        var exitCode = ConvertCommand.Create().Parse(["--from", "llama2c", Stories260K, "--out", folder])
            .Invoke(new InvocationConfiguration { Output = output, EnableDefaultExceptionHandler = false });
        Assert.Equal(0, exitCode);
        Assert.Contains("5 layers", output.ToString(), StringComparison.Ordinal);
        using var loaded = ModelCheckpoint.Load(folder);
        Assert.True(loaded.Config.TieWordEmbeddings);
    }

    [Fact]
    public void Convert_command_rejects_an_unknown_format()
    {
        var error = Assert.Throws<UserInputException>(() => ConvertCommand.Create()
            .Parse(["--from", "gguf", Stories260K, "--out", _scratch.Combine("x")])
            .Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
        Assert.Equal("--from 'gguf' is not a checkpoint format babel converts; use --from llama2c.", error.Message);
        Assert.False(Directory.Exists(_scratch.Combine("x")));
    }

    [Fact]
    public void Convert_command_reports_a_truncated_input_as_a_user_error()
    {
        var truncated = _scratch.Combine("cut.bin");
        File.WriteAllBytes(truncated, File.ReadAllBytes(Stories260K)[..5000]);
        Assert.Throws<UserInputException>(() => ConvertCommand.Create()
            .Parse(["--from", "llama2c", truncated, "--out", _scratch.Combine("y")])
            .Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));

        // With System.CommandLine's own handler the exception becomes a non-zero exit and a message on stderr.
        var error = new StringWriter();
        var exitCode = ConvertCommand.Create()
            .Parse(["--from", "llama2c", truncated, "--out", _scratch.Combine("y")])
            .Invoke(new InvocationConfiguration { Error = error });
        Assert.NotEqual(0, exitCode);
        Assert.Contains("truncated", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Convert_command_requires_from_and_out()
    {
        var parse = ConvertCommand.Create().Parse([Stories260K]);
        Assert.Contains(parse.Errors, e => e.Message.Contains("--from", StringComparison.Ordinal));
        Assert.Contains(parse.Errors, e => e.Message.Contains("--out", StringComparison.Ordinal));
    }
}
