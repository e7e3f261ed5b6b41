using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// A model folder in Hugging Face layout, loaded: its <see cref="ModelConfig"/> and its float32 tensors keyed by
/// Hugging Face state-dict name. Disposing it disposes the tensors.
/// </summary>
public sealed partial class ModelCheckpoint(ModelConfig config, Dictionary<string, Tensor> tensors) : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";
    public const string LmHeadName = "lm_head.weight";
    /// <summary>Hugging Face's default shard limit ("5GB").</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    public ModelConfig Config { get; } = config;
    public Dictionary<string, Tensor> Tensors { get; } = tensors;

    public void Deconstruct(out ModelConfig config, out Dictionary<string, Tensor> tensors) => (config, tensors) = (Config, Tensors);

    public void Dispose()
    {
        foreach (var tensor in Tensors.Values) tensor.Dispose();
        Tensors.Clear();
    }

    /// <summary>Checks <c>config.json</c> and every safetensors header against each other without reading tensor data.</summary>
    public static ModelConfig Validate(string directory) => Inspect(directory).Config;

    /// <summary>Validates the checkpoint and its <c>tokenizer.json</c>, which must fit the model's vocabulary.</summary>
    public static ModelConfig ValidateWithTokenizer(string directory)
    {
        var config = Validate(directory);
        using var tokenizer = Tokenization.HuggingFaceTokenizer.Load(directory);
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new UserInputException($"{directory}: tokenizer.json has {tokenizer.VocabSize} tokens but the model's vocab_size is {config.VocabSize}; use the tokenizer the model was trained with.");
        }
        return config;
    }

    /// <summary>
    /// Checks <c>config.json</c> and every safetensors header of <paramref name="directory"/> against each other and returns
    /// where each tensor is, without reading tensor data (<see cref="CheckpointWeights.ReadInto"/> reads it).
    /// </summary>
    public static CheckpointWeights Open(string directory)
    {
        var (config, located) = Inspect(directory);
        return new CheckpointWeights(directory, config, located);
    }

    private static (ModelConfig Config, Dictionary<string, TensorLocation> Located) Inspect(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new UserInputException($"Model folder {directory} does not exist; pass a folder holding config.json and model.safetensors.");
        }
        var config = ModelConfig.Load(directory);
        var located = LocateTensors(directory);
        var shapes = located.ToDictionary(p => p.Key, p => p.Value.Entry.Shape, StringComparer.Ordinal);
        CheckAgainst(config, shapes, directory);
        return (config, located);
    }

    /// <summary>
    /// Loads <c>config.json</c> and <c>model.safetensors</c> (or the shards <c>model.safetensors.index.json</c> lists),
    /// checking every header against the config before reading any tensor data. A tied model's extra
    /// <c>lm_head.weight</c> is ignored.
    /// </summary>
    public static ModelCheckpoint Load(string directory)
    {
        var weights = Open(directory);
        // State-dict order, whatever the files' order.
        var tensors = weights.Config.ExpectedTensors().ToDictionary(e => e.Name, e => empty(e.Shape, ScalarType.Float32), StringComparer.Ordinal);
        try
        {
            weights.ReadInto(tensors);
            return new ModelCheckpoint(weights.Config, tensors);
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="config"/> and <paramref name="tensors"/> to <paramref name="directory"/> in Hugging Face
    /// layout: one <c>model.safetensors</c>, or shards of at most <paramref name="maxShardBytes"/> plus an index.
    /// Each file is written atomically and config.json last, so the folder reads as a model only once complete.
    /// A tied model's <c>lm_head.weight</c> is not written; other files in the folder (tokenizer.json) are kept.
    /// </summary>
    public static void Save(string directory, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors,
        long maxShardBytes = DefaultMaxShardBytes, SafeTensorsDtype dtype = SafeTensorsDtype.F32)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        config.Validate("the model config to save");
        CheckAgainst(config, tensors.ToDictionary(p => p.Key, p => p.Value.shape, StringComparer.Ordinal), "the tensors to save");

        var ordered = config.ExpectedTensors().Select(e => (e.Name, Tensor: tensors[e.Name])).ToList();
        var shards = new List<List<(string Name, Tensor Tensor)>>();
        long shardBytes = 0;
        foreach (var item in ordered)
        {
            var size = SafeTensors.ByteSize(item.Tensor.shape, dtype);
            if (shards.Count == 0 || (shardBytes + size > maxShardBytes && shardBytes > 0))
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(item);
            shardBytes += size;
        }

        Directory.CreateDirectory(directory);
        // A folder without config.json is not a model: nobody loads a half-replaced checkpoint.
        File.Delete(Path.Combine(directory, ModelConfig.ConfigFileName));
        var written = new HashSet<string>(StringComparer.Ordinal);
        if (shards.Count == 1)
        {
            SafeTensors.Write(Path.Combine(directory, SingleFileName), shards[0].ToDictionary(p => p.Name, p => p.Tensor), dtype);
            written.Add(SingleFileName);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < shards.Count; i++)
            {
                var fileName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                SafeTensors.Write(Path.Combine(directory, fileName), shards[i].ToDictionary(p => p.Name, p => p.Tensor), dtype);
                written.Add(fileName);
                foreach (var (name, _) in shards[i]) weightMap[name] = fileName;
            }
            var index = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = ordered.Sum(p => SafeTensors.ByteSize(p.Tensor.shape, dtype)) },
                ["weight_map"] = new JsonObject(weightMap.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value)))),
            };
            AtomicFile.WriteAllText(Path.Combine(directory, IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            written.Add(IndexFileName);
        }
        foreach (var stale in Directory.EnumerateFiles(directory).Select(Path.GetFileName).OfType<string>()
                     .Where(n => (n == SingleFileName || n == IndexFileName || ShardFileName().IsMatch(n)) && !written.Contains(n)))
        {
            File.Delete(Path.Combine(directory, stale));
        }
        (config with { TorchDtype = TorchDtypeOf(dtype) }).Save(directory);
    }

    /// <summary>
    /// Checks tensor names and shapes against what <paramref name="config"/> expects; throws
    /// <see cref="UserInputException"/> naming the first missing, misshapen or unexpected tensor.
    /// </summary>
    public static void CheckAgainst(ModelConfig config, IReadOnlyDictionary<string, long[]> shapes, string source)
    {
        var expected = config.ExpectedTensors();
        foreach (var (name, shape) in expected)
        {
            if (!shapes.TryGetValue(name, out var actual))
            {
                var hint = name == LmHeadName
                    ? "; set tie_word_embeddings to true if the classifier shares the token embedding"
                    : "; the weights do not belong to this config.json";
                throw new UserInputException($"{source}: {name} is missing but config.json ({ExpectedBecause(config, name)}) expects it{hint}.");
            }
            if (!actual.SequenceEqual(shape))
            {
                throw new UserInputException($"{source}: {name} has shape {Format(actual)} but config.json ({ShapeBecause(config, name)}) expects {Format(shape)}.");
            }
        }
        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var unexpected = shapes.Keys
            .Where(n => !expectedNames.Contains(n) && !(n == LmHeadName && config.TieWordEmbeddings))
            .Order(StringComparer.Ordinal)
            .FirstOrDefault();
        if (unexpected is not null)
        {
            throw new UserInputException($"{source}: {unexpected} is not part of the model config.json describes " +
                $"(num_hidden_layers {config.NumHiddenLayers}, attention_bias {Lower(config.AttentionBias)}); remove it or fix config.json.");
        }
    }

    private static Dictionary<string, TensorLocation> LocateTensors(string directory)
    {
        var single = Path.Combine(directory, SingleFileName);
        var indexPath = Path.Combine(directory, IndexFileName);
        var located = new Dictionary<string, TensorLocation>(StringComparer.Ordinal);
        if (File.Exists(single))
        {
            var header = SafeTensors.ReadHeader(single);
            foreach (var entry in header.Entries) located[entry.Name] = new(single, entry, header.DataStart);
            return located;
        }
        if (!File.Exists(indexPath))
        {
            throw new UserInputException($"{directory} holds neither {SingleFileName} nor {IndexFileName}; save the weights in safetensors format there.");
        }
        var weightMap = ReadWeightMap(indexPath);
        foreach (var fileName in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
        {
            var shard = Path.Combine(directory, fileName);
            if (!File.Exists(shard))
            {
                throw new UserInputException($"{indexPath} lists shard {fileName}, which is missing; copy the complete model folder.");
            }
            var header = SafeTensors.ReadHeader(shard);
            foreach (var entry in header.Entries)
            {
                if (located.TryGetValue(entry.Name, out var other))
                {
                    throw new UserInputException($"{directory}: tensor {entry.Name} is stored in both {Path.GetFileName(other.File)} and {fileName}; keep one copy.");
                }
                if (!weightMap.TryGetValue(entry.Name, out var mapped) || mapped != fileName)
                {
                    throw new UserInputException($"{indexPath} does not map tensor {entry.Name} to {fileName}, which holds it; regenerate the index.");
                }
                located[entry.Name] = new(shard, entry, header.DataStart);
            }
        }
        var absent = weightMap.Keys.FirstOrDefault(n => !located.ContainsKey(n));
        if (absent is not null)
        {
            throw new UserInputException($"{indexPath} maps tensor {absent} to {weightMap[absent]}, which does not hold it; regenerate the index.");
        }
        return located;
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        try
        {
            var map = JsonNode.Parse(File.ReadAllText(indexPath))?["weight_map"] as JsonObject
                ?? throw new UserInputException($"{indexPath} has no \"weight_map\" object; regenerate the index.");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, value) in map)
            {
                var fileName = value is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
                // Shards live beside the index: a path could point anywhere on disk.
                if (fileName is null || fileName.Length == 0 || fileName != Path.GetFileName(fileName) || fileName is "." or "..")
                {
                    throw new UserInputException($"{indexPath} maps tensor {name} to '{value?.ToJsonString()}', which is not a file name beside the index; regenerate the index.");
                }
                result[name] = fileName;
            }
            return result;
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{indexPath} is not valid JSON ({e.Message}); regenerate the index.", e);
        }
    }

    private static string ExpectedBecause(ModelConfig config, string name) =>
        LayerTensor().IsMatch(name) ? $"num_hidden_layers {config.NumHiddenLayers}"
        : name == LmHeadName ? "tie_word_embeddings false"
        : ShapeBecause(config, name);

    // The config fields that fix each dimension, so the message points at the field to correct.
    private static string ShapeBecause(ModelConfig c, string name)
    {
        var hidden = $"hidden_size {c.HiddenSize}";
        var queries = $"num_attention_heads {c.NumAttentionHeads} × head_dim {c.HeadDim}";
        var keyValues = $"num_key_value_heads {c.NumKeyValueHeads} × head_dim {c.HeadDim}";
        var intermediate = c.IntermediateSizes is null ? $"intermediate_size {c.IntermediateSize}" : "intermediate_sizes";
        return name switch
        {
            _ when name.EndsWith("embed_tokens.weight", StringComparison.Ordinal) || name == LmHeadName => $"vocab_size {c.VocabSize}, {hidden}",
            _ when name.EndsWith("q_proj.weight", StringComparison.Ordinal) => $"{queries}, {hidden}",
            _ when name.EndsWith("q_proj.bias", StringComparison.Ordinal) => queries,
            _ when name.EndsWith("k_proj.weight", StringComparison.Ordinal) || name.EndsWith("v_proj.weight", StringComparison.Ordinal) => $"{keyValues}, {hidden}",
            _ when name.EndsWith("k_proj.bias", StringComparison.Ordinal) || name.EndsWith("v_proj.bias", StringComparison.Ordinal) => keyValues,
            _ when name.EndsWith("o_proj.weight", StringComparison.Ordinal) => $"{hidden}, {queries}",
            _ when name.EndsWith("gate_proj.weight", StringComparison.Ordinal) || name.EndsWith("up_proj.weight", StringComparison.Ordinal) => $"{intermediate}, {hidden}",
            _ when name.EndsWith("down_proj.weight", StringComparison.Ordinal) => $"{hidden}, {intermediate}",
            _ => hidden,
        };
    }

    private static string TorchDtypeOf(SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F16 => "float16",
        SafeTensorsDtype.BF16 => "bfloat16",
        SafeTensorsDtype.F64 => "float64",
        _ => "float32",
    };

    private static string Format(long[] shape) => $"[{string.Join(", ", shape)}]";

    private static string Lower(bool value) => value ? "true" : "false";

    [GeneratedRegex(@"^model\.layers\.\d+\.")]
    private static partial Regex LayerTensor();

    [GeneratedRegex(@"^model-\d+-of-\d+\.safetensors$")]
    private static partial Regex ShardFileName();
}

/// <summary>Where one tensor of a checkpoint is: its file, its header entry, and the file offset of that file's data buffer.</summary>
internal sealed record TensorLocation(string File, SafeTensorsEntry Entry, long DataStart);

/// <summary>
/// A checkpoint whose config and headers were checked against each other (<see cref="ModelCheckpoint.Open"/>) and whose
/// tensor data is still on disk: <see cref="ReadInto"/> reads each tensor straight into memory the caller allocated.
/// </summary>
public sealed class CheckpointWeights
{
    private readonly string _directory;
    private readonly Dictionary<string, TensorLocation> _located;

    internal CheckpointWeights(string directory, ModelConfig config, Dictionary<string, TensorLocation> located)
    {
        _directory = directory;
        Config = config;
        _located = located;
    }

    public ModelConfig Config { get; }

    /// <summary>The type the checkpoint stores its weights in: that of the token embedding (norms are sometimes kept wider).</summary>
    public SafeTensorsDtype StoredDtype => _located["model.embed_tokens.weight"].Entry.Dtype;

    /// <summary>
    /// Reads every tensor named in <paramref name="destinations"/> (contiguous CPU tensors of the checkpoint's shapes, any
    /// floating type) from the files into the destinations' own memory: a tensor stored in the destination's type lands
    /// there with no copy in between, another type is converted through a small staging block. Each file is opened once.
    /// </summary>
    /// <exception cref="UserInputException">A destination names a tensor the checkpoint lacks or has another shape, or a file is truncated.</exception>
    public void ReadInto(IReadOnlyDictionary<string, Tensor> destinations)
    {
        foreach (var (name, destination) in destinations)
        {
            if (!_located.TryGetValue(name, out var location))
                throw new UserInputException($"{_directory} lacks {name}, which the model's config requires.");
            if (!location.Entry.Shape.SequenceEqual(destination.shape))
                throw new UserInputException($"{_directory}: {name} has shape [{string.Join(", ", location.Entry.Shape)}] but the model expects [{string.Join(", ", destination.shape)}].");
        }
        using var guard = no_grad();
        foreach (var file in destinations.Keys.GroupBy(name => _located[name].File).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            using var handle = SafeTensors.OpenRead(file.Key);
            // In file order, so the disk reads sequentially.
            foreach (var name in file.OrderBy(name => _located[name].Entry.Begin))
            {
                var location = _located[name];
                TensorBytes.ReadInto(handle, location.DataStart + location.Entry.Begin, destinations[name], location.Entry.Dtype, file.Key);
            }
        }
    }
}
