using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Storage;
using TorchSharp;
using Xunit;
using static Babel.UnitTests.Checkpoints.CheckpointTestFiles;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly ScratchFolder _scratch = new();

    public SafeTensorsTests() => TorchRuntime.Initialize();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Float32_round_trip_is_bit_identical_for_every_shape()
    {
        torch.random.manual_seed(7);
        var tensors = new Dictionary<string, Tensor>
        {
            ["b.matrix"] = randn(37, 5),
            ["a.vector"] = randn(11),
            ["c.scalar"] = tensor(3.25f),
            ["d.empty"] = zeros(0, 4),
            ["e.cube"] = randn(2, 3, 4) * 1e30f,
        };
        var path = _scratch.Combine("round.safetensors");
        SafeTensors.Write(path, tensors);
        var read = SafeTensors.Read(path);
        AssertBitIdentical(tensors, read);
        Assert.Equal(new long[] { 0, 4 }, read["d.empty"].shape);
        Assert.Empty(read["c.scalar"].shape);
        DisposeAll(read);
        DisposeAll(tensors);
    }

    [Fact]
    public void Header_is_space_padded_to_8_bytes_sorted_by_name_and_marked_as_pytorch()
    {
        var tensors = new Dictionary<string, Tensor> { ["zeta"] = ones(3), ["alpha"] = ones(1, 2) };
        var path = _scratch.Combine("header.safetensors");
        SafeTensors.Write(path, tensors);
        var bytes = File.ReadAllBytes(path);
        var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, length % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, length);
        var json = JsonDocument.Parse(header).RootElement;
        Assert.Equal(["__metadata__", "alpha", "zeta"], json.EnumerateObject().Select(p => p.Name));
        Assert.Equal("pt", json.GetProperty("__metadata__").GetProperty("format").GetString());
        Assert.Equal("[0,8]", json.GetProperty("alpha").GetProperty("data_offsets").GetRawText());
        Assert.Equal("[8,20]", json.GetProperty("zeta").GetProperty("data_offsets").GetRawText());
        var jsonEnd = header.LastIndexOf('}') + 1;
        Assert.True(jsonEnd > length - 8, "padding is shorter than the 8-byte alignment");
        Assert.All(header[jsonEnd..], c => Assert.Equal(' ', c));
        Assert.Equal(8 + length + 20, bytes.Length);
        DisposeAll(tensors);
    }

    [Fact]
    public void Writing_is_deterministic()
    {
        var first = _scratch.Combine("first.safetensors");
        var second = _scratch.Combine("second.safetensors");
        torch.random.manual_seed(3);
        var tensors = new Dictionary<string, Tensor> { ["x"] = randn(4, 4), ["w"] = randn(2) };
        SafeTensors.Write(first, tensors);
        SafeTensors.Write(second, tensors.Reverse().ToDictionary());
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
        DisposeAll(tensors);
    }

    [Fact]
    public void Bf16_f16_and_f64_are_widened_to_the_exact_float32_values()
    {
        // Expected values worked out by hand from the bit patterns (sign, exponent, mantissa).
        ushort[] bf16Bits = [0x3F80, 0xC000, 0x4049, 0x7F80, 0x0001, 0xBE00];
        float[] bf16Values = [1.0f, -2.0f, 3.140625f, float.PositiveInfinity, 9.18354962e-41f, -0.125f];
        ushort[] f16Bits = [0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0xFC00];
        float[] f16Values = [1.0f, -2.0f, 0.333251953125f, 65504f, 5.9604644775390625e-8f, float.NegativeInfinity];
        double[] f64Values = [0.1, -1e300, 2.5];
        var data = new List<byte>();
        foreach (var bits in bf16Bits) data.AddRange(BitConverter.GetBytes(bits));
        foreach (var bits in f16Bits) data.AddRange(BitConverter.GetBytes(bits));
        foreach (var value in f64Values) data.AddRange(BitConverter.GetBytes(value));
        var path = _scratch.Combine("half.safetensors");
        WriteRaw(path, """
            {"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"h":{"dtype":"F16","shape":[6],"data_offsets":[12,24]},"d":{"dtype":"F64","shape":[3],"data_offsets":[24,48]}}
            """, data.ToArray());

        var read = SafeTensors.Read(path);
        Assert.Equal(new long[] { 2, 3 }, read["b"].shape);
        Assert.Equal(bf16Values, read["b"].data<float>().ToArray());
        Assert.Equal(f16Values, read["h"].data<float>().ToArray());
        Assert.Equal(f64Values.Select(v => (float)v), read["d"].data<float>().ToArray());
        DisposeAll(read);
    }

    [Fact]
    public void Bf16_writing_rounds_to_nearest_even_and_reads_back()
    {
        // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even mantissa (1).
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
        var values = new Dictionary<string, Tensor> { ["v"] = tensor(new[] { 1f + 1f / 256, 1f + 3f / 256, -7.5f }) };
        var path = _scratch.Combine("bf16.safetensors");
        SafeTensors.Write(path, values, SafeTensorsDtype.BF16);
        Assert.Equal(SafeTensorsDtype.BF16, SafeTensors.ReadHeader(path).Entries.Single().Dtype);
        var read = SafeTensors.Read(path);
        Assert.Equal([1f, 1f + 1f / 64, -7.5f], read["v"].data<float>().ToArray());
        DisposeAll(read);
        DisposeAll(values);
    }

    [Fact]
    public void Truncated_file_is_a_user_error_naming_file_and_tensor()
    {
        var path = _scratch.Combine("cut.safetensors");
        var tensors = new Dictionary<string, Tensor> { ["a"] = ones(10), ["b"] = ones(10) };
        SafeTensors.Write(path, tensors);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        AssertUserError(() => SafeTensors.Read(path), path, "'b'", "truncated");
        DisposeAll(tensors);
    }

    [Fact]
    public void Every_truncation_and_every_single_byte_corruption_is_a_user_error_or_a_valid_read()
    {
        var path = _scratch.Combine("fuzz.safetensors");
        var tensors = new Dictionary<string, Tensor> { ["a"] = ones(3), ["b"] = ones(2, 2) };
        SafeTensors.Write(path, tensors);
        var original = File.ReadAllBytes(path);
        var broken = _scratch.Combine("broken.safetensors");
        for (var length = 0; length < original.Length; length++)
        {
            File.WriteAllBytes(broken, original[..length]);
            Assert.Throws<UserInputException>(() => SafeTensors.Read(broken));
        }
        var random = new Random(11);
        for (var i = 0; i < original.Length; i++)
        {
            var corrupt = (byte[])original.Clone();
            corrupt[i] = (byte)random.Next(256);
            File.WriteAllBytes(broken, corrupt);
            try
            {
                DisposeAll(SafeTensors.Read(broken));
            }
            catch (UserInputException e)
            {
                Assert.Contains(broken, e.Message, StringComparison.Ordinal);
            }
        }
        DisposeAll(tensors);
    }

    [Fact]
    public void Header_length_beyond_the_file_is_a_user_error()
    {
        var path = _scratch.Combine("long.safetensors");
        WriteRaw(path, "{}", [], declaredHeaderLength: 1_000_000);
        AssertUserError(() => SafeTensors.Read(path), path, "header length 1000000", "runs past the end");
    }

    [Fact]
    public void Header_that_is_not_json_is_a_user_error()
    {
        var path = _scratch.Combine("text.safetensors");
        WriteRaw(path, "{not json at all", []);
        AssertUserError(() => SafeTensors.Read(path), path, "not JSON");
    }

    [Fact]
    public void Unknown_dtype_is_a_user_error_naming_tensor_and_dtype()
    {
        var path = _scratch.Combine("dtype.safetensors");
        WriteRaw(path, """{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", new byte[8]);
        AssertUserError(() => SafeTensors.Read(path), path, "'ids'", "'I64'");
    }

    [Fact]
    public void Offsets_beyond_the_data_are_a_user_error()
    {
        var path = _scratch.Combine("range.safetensors");
        WriteRaw(path, """{"w":{"dtype":"F32","shape":[4],"data_offsets":[100,116]}}""", new byte[16]);
        AssertUserError(() => SafeTensors.Read(path), path, "'w'", "[100, 116]", "out of range");
    }

    [Fact]
    public void Overlapping_tensors_are_a_user_error()
    {
        var path = _scratch.Combine("overlap.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12]);
        AssertUserError(() => SafeTensors.Read(path), path, "'b' overlaps tensor 'a'");
    }

    [Fact]
    public void Offsets_that_disagree_with_the_shape_are_a_user_error()
    {
        var path = _scratch.Combine("size.safetensors");
        WriteRaw(path, """{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,12]}}""", new byte[12]);
        AssertUserError(() => SafeTensors.Read(path), path, "'w'", "spanning 12 bytes", "needs 6");
    }

    [Fact]
    public void Bytes_belonging_to_no_tensor_are_a_user_error()
    {
        var path = _scratch.Combine("gap.safetensors");
        WriteRaw(path, """{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", new byte[8]);
        AssertUserError(() => SafeTensors.Read(path), path, "belong to no tensor");
    }

    [Fact]
    public void Missing_file_is_a_user_error()
    {
        var path = _scratch.Combine("absent.safetensors");
        AssertUserError(() => SafeTensors.Read(path), path, "does not exist");
    }
}
