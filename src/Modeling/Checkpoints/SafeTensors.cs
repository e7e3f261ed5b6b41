using System.Buffers.Binary;
using System.Text.Json;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>Element types of the safetensors format that Babel reads (into float32, or kept as stored) and writes.</summary>
public enum SafeTensorsDtype
{
    F32,
    F16,
    BF16,
    F64,
}

/// <summary>One tensor of a safetensors header: its element type, shape and byte range in the data buffer.</summary>
public sealed record SafeTensorsEntry(string Name, SafeTensorsDtype Dtype, long[] Shape, long Begin, long End);

/// <summary>A validated safetensors header; <see cref="DataStart"/> is the file offset of the data buffer.</summary>
public sealed record SafeTensorsHeader(IReadOnlyList<SafeTensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart);

/// <summary>
/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming every tensor's
/// dtype, shape and data_offsets, then the raw little-endian data. Reading validates strictly and converts to float32.
/// </summary>
public static class SafeTensors
{
    public const string MetadataKey = "__metadata__";
    // The reference implementation refuses larger headers; a corrupt length must not make us allocate gigabytes.
    public const long MaxHeaderBytes = 100_000_000;
    private const int HeaderLengthBytes = 8;
    private const int HeaderAlignment = 8;

    public static int ElementSize(SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F32 => 4,
        SafeTensorsDtype.F16 or SafeTensorsDtype.BF16 => 2,
        SafeTensorsDtype.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Reads and validates the header of <paramref name="path"/> without touching the tensor data.</summary>
    public static SafeTensorsHeader ReadHeader(string path)
    {
        using var file = Open(path);
        return ReadHeader(file, path);
    }

    /// <summary>Reads every tensor of <paramref name="path"/> as float32, keyed by name in file order.</summary>
    public static Dictionary<string, Tensor> Read(string path) => Read(path, _ => true);

    /// <summary>Reads the tensors whose names <paramref name="include"/> accepts, as float32, in file order.</summary>
    public static Dictionary<string, Tensor> Read(string path, Predicate<string> include)
    {
        using var file = Open(path);
        var header = ReadHeader(file, path);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in header.Entries.Where(e => include(e.Name)))
            {
                var tensor = empty(entry.Shape, ScalarType.Float32);
                tensors.Add(entry.Name, tensor);
                TensorBytes.ReadInto(file, header.DataStart + entry.Begin, tensor, entry.Dtype, path);
            }
            return tensors;
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> as <paramref name="dtype"/> to <paramref name="path"/> atomically, in ordinal name
    /// order, with the header padded by spaces to a multiple of 8 bytes as the reference implementation does.
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors,
        SafeTensorsDtype dtype = SafeTensorsDtype.F32, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.Order(StringComparer.Ordinal).ToList();
        var header = HeaderBytes(names.Select(n => (n, tensors[n].shape)).ToList(), dtype, metadata);
        var scalarType = ScalarTypeOf(dtype);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[HeaderLengthBytes];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var name in names)
            {
                using var scope = NewDisposeScope();
                var stored = tensors[name].detach().cpu().to_type(scalarType).contiguous();
                TensorBytes.Write(stream, stored);
            }
        });
    }

    /// <summary>The bytes <paramref name="shape"/> takes in the data buffer when stored as <paramref name="dtype"/>.</summary>
    public static long ByteSize(long[] shape, SafeTensorsDtype dtype) => shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);

    internal static byte[] HeaderBytes(IReadOnlyList<(string Name, long[] Shape)> tensors, SafeTensorsDtype dtype, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject(MetadataKey);
            // Transformers refuses safetensors files whose metadata lacks a framework "format".
            var allMetadata = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
            foreach (var (key, value) in metadata ?? new Dictionary<string, string>()) allMetadata[key] = value;
            foreach (var (key, value) in allMetadata) json.WriteString(key, value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var (name, shape) in tensors)
            {
                var size = ByteSize(shape, dtype);
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (var dimension in shape) json.WriteNumberValue(dimension);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + size);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += size;
            }
            json.WriteEndObject();
        }
        var padding = (HeaderAlignment - (int)(buffer.Length % HeaderAlignment)) % HeaderAlignment;
        for (var i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    internal static ScalarType ScalarTypeOf(SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F32 => ScalarType.Float32,
        SafeTensorsDtype.F16 => ScalarType.Float16,
        SafeTensorsDtype.BF16 => ScalarType.BFloat16,
        SafeTensorsDtype.F64 => ScalarType.Float64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Opens <paramref name="path"/> for reading tensor data; a missing or unreadable file is one sentence.</summary>
    internal static Microsoft.Win32.SafeHandles.SafeFileHandle OpenRead(string path) => Open(path);

    private static Microsoft.Win32.SafeHandles.SafeFileHandle Open(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new UserInputException($"{path} does not exist; check the model path.", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new UserInputException($"{path} cannot be read ({e.Message}); fix its permissions.", e);
        }
    }

    private static SafeTensorsHeader ReadHeader(Microsoft.Win32.SafeHandles.SafeFileHandle file, string path)
    {
        var fileLength = RandomAccess.GetLength(file);
        UserInputException Invalid(string problem) => new($"{path} is not a valid safetensors file: {problem}; re-download or re-save it.");
        if (fileLength < HeaderLengthBytes)
        {
            throw Invalid($"it has {fileLength} bytes, fewer than the 8-byte header length");
        }
        Span<byte> lengthBytes = stackalloc byte[HeaderLengthBytes];
        TensorBytes.ReadExactly(file, 0, lengthBytes, path);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - HeaderLengthBytes))
        {
            throw Invalid($"its header length {headerLength} runs past the end of the file ({fileLength} bytes), so it is truncated or not safetensors");
        }
        if (headerLength > MaxHeaderBytes)
        {
            throw Invalid($"its header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        }
        var headerBytes = new byte[headerLength];
        TensorBytes.ReadExactly(file, HeaderLengthBytes, headerBytes, path);
        var dataStart = HeaderLengthBytes + (long)headerLength;
        var dataLength = fileLength - dataStart;

        // JsonDocument accepts invalid UTF-8 inside strings and fails only when a name is read.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
        {
            throw Invalid("its header is not valid UTF-8 JSON");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes);
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw Invalid($"its header is not JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Invalid("its header is not a JSON object");
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<SafeTensorsEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw Invalid($"tensor '{property.Name}' appears twice in the header");
                }
                if (property.Name == MetadataKey)
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                    {
                        throw Invalid($"{MetadataKey} is not a JSON object");
                    }
                    foreach (var item in property.Value.EnumerateObject())
                    {
                        metadata[item.Name] = item.Value.ValueKind == JsonValueKind.String
                            ? item.Value.GetString()!
                            : throw Invalid($"{MetadataKey} value '{item.Name}' is not a string");
                    }
                    continue;
                }
                entries.Add(ParseEntry(property, dataLength, Invalid));
            }
            CheckLayout(entries, dataLength, Invalid);
            return new SafeTensorsHeader(entries.OrderBy(e => e.Begin).ThenBy(e => e.Name, StringComparer.Ordinal).ToList(), metadata, dataStart);
        }
    }

    private static SafeTensorsEntry ParseEntry(JsonProperty property, long dataLength, Func<string, UserInputException> invalid)
    {
        var name = property.Name;
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw invalid($"tensor '{name}' is not described by a JSON object");
        }
        var dtypeText = value.TryGetProperty("dtype", out var d) && d.ValueKind == JsonValueKind.String
            ? d.GetString()!
            : throw invalid($"tensor '{name}' has no string \"dtype\"");
        if (!Enum.TryParse<SafeTensorsDtype>(dtypeText, ignoreCase: false, out var dtype) || !Enum.IsDefined(dtype) || dtypeText != dtype.ToString())
        {
            throw invalid($"tensor '{name}' has dtype '{dtypeText}', which Babel cannot read (it reads F32, F16, BF16 and F64)");
        }
        var shape = NonNegativeIntegers(value, "shape", name, invalid);
        var offsets = NonNegativeIntegers(value, "data_offsets", name, invalid);
        if (offsets.Length != 2)
        {
            throw invalid($"tensor '{name}' has {offsets.Length} data_offsets instead of [begin, end]");
        }
        var (begin, end) = (offsets[0], offsets[1]);
        if (begin > end)
        {
            throw invalid($"tensor '{name}' has data_offsets [{begin}, {end}] that end before they begin");
        }
        long expectedBytes;
        try
        {
            expectedBytes = checked(shape.Aggregate(1L, (a, b) => checked(a * b)) * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw invalid($"tensor '{name}' has an impossibly large shape [{string.Join(", ", shape)}]");
        }
        if (end - begin != expectedBytes)
        {
            throw invalid($"tensor '{name}' has data_offsets [{begin}, {end}] spanning {end - begin} bytes but its shape [{string.Join(", ", shape)}] of {dtypeText} needs {expectedBytes}");
        }
        if (end > dataLength)
        {
            throw invalid($"tensor '{name}' has data_offsets [{begin}, {end}] beyond the {dataLength} bytes of data that follow the header, so the file is truncated or its offsets are out of range");
        }
        return new SafeTensorsEntry(name, dtype, shape, begin, end);
    }

    // The reference implementation requires the tensors to tile the data buffer exactly: no overlap, no gap, no tail.
    private static void CheckLayout(List<SafeTensorsEntry> entries, long dataLength, Func<string, UserInputException> invalid)
    {
        long position = 0;
        SafeTensorsEntry? previous = null;
        foreach (var entry in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (entry.Begin < position)
            {
                throw invalid($"tensor '{entry.Name}' overlaps tensor '{previous!.Name}' in the data buffer");
            }
            if (entry.Begin > position)
            {
                throw invalid($"bytes {position} to {entry.Begin} of the data buffer, before tensor '{entry.Name}', belong to no tensor");
            }
            position = entry.End;
            previous = entry;
        }
        if (position != dataLength)
        {
            throw invalid($"the header describes {position} bytes of tensor data but {dataLength} follow it");
        }
    }

    private static long[] NonNegativeIntegers(JsonElement value, string key, string name, Func<string, UserInputException> invalid)
    {
        if (!value.TryGetProperty(key, out var array) || array.ValueKind != JsonValueKind.Array)
        {
            throw invalid($"tensor '{name}' has no \"{key}\" array");
        }
        var result = new long[array.GetArrayLength()];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var number) || number < 0)
            {
                throw invalid($"tensor '{name}' has a \"{key}\" entry that is not a non-negative integer");
            }
            result[i++] = number;
        }
        return result;
    }
}
