using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Xunit;
using static Babel.UnitTests.Checkpoints.CheckpointTestFiles;
using static TorchSharp.torch;

namespace Babel.UnitTests.Checkpoints;

public sealed class ModelCheckpointTests : IDisposable
{
    private readonly ScratchFolder _scratch = new();

    public ModelCheckpointTests() => TorchRuntime.Initialize();

    public void Dispose() => _scratch.Dispose();

    private string ModelFolder => _scratch.Combine("model");

    [Fact]
    public void Save_then_load_is_bit_identical_in_one_file()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 1);
        ModelCheckpoint.Save(ModelFolder, config, tensors);

        Assert.True(File.Exists(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName)));
        Assert.False(File.Exists(Path.Combine(ModelFolder, ModelCheckpoint.IndexFileName)));
        using var loaded = ModelCheckpoint.Load(ModelFolder);
        var (loadedConfig, loadedTensors) = loaded;
        Assert.Equal(config, loadedConfig);
        AssertBitIdentical(tensors, loadedTensors);
        Assert.Equal(config.ExpectedTensors().Select(e => e.Name), loadedTensors.Keys);
        DisposeAll(tensors);
    }

    [Fact]
    public void Sharded_save_then_load_is_bit_identical_and_a_later_single_file_save_removes_the_shards()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 2);
        // 1 KB shards: the 512-byte embedding and each layer's matrices spread over several files.
        ModelCheckpoint.Save(ModelFolder, config, tensors, maxShardBytes: 1024);

        var shards = Directory.GetFiles(ModelFolder, "model-*-of-*.safetensors").Select(Path.GetFileName).Order().ToList();
        Assert.True(shards.Count >= 3, $"expected several shards, got {shards.Count}");
        Assert.Equal($"model-00001-of-{shards.Count:D5}.safetensors", shards[0]);
        Assert.False(File.Exists(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName)));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(ModelFolder, ModelCheckpoint.IndexFileName)))!;
        Assert.Equal(tensors.Values.Sum(t => t.numel() * 4), index["metadata"]!["total_size"]!.GetValue<long>());
        Assert.Equal(tensors.Count, index["weight_map"]!.AsObject().Count);
        foreach (var shard in shards)
        {
            Assert.True(new FileInfo(Path.Combine(ModelFolder, shard!)).Length <= 1024 + 1024, $"{shard} is far above the shard size");
        }
        using (var loaded = ModelCheckpoint.Load(ModelFolder))
        {
            AssertBitIdentical(tensors, loaded.Tensors);
        }

        ModelCheckpoint.Save(ModelFolder, config, tensors);
        Assert.Empty(Directory.GetFiles(ModelFolder, "model-*-of-*.safetensors"));
        Assert.False(File.Exists(Path.Combine(ModelFolder, ModelCheckpoint.IndexFileName)));
        using (var loaded = ModelCheckpoint.Load(ModelFolder))
        {
            AssertBitIdentical(tensors, loaded.Tensors);
        }
        DisposeAll(tensors);
    }

    [Fact]
    public void Saving_keeps_other_files_and_leaves_no_temporary_files()
    {
        Directory.CreateDirectory(ModelFolder);
        File.WriteAllText(Path.Combine(ModelFolder, "tokenizer.json"), "{}");
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 3);
        ModelCheckpoint.Save(ModelFolder, config, tensors, maxShardBytes: 2048);
        Assert.True(File.Exists(Path.Combine(ModelFolder, "tokenizer.json")));
        Assert.Empty(Directory.GetFiles(ModelFolder, "*.tmp", SearchOption.AllDirectories));
        DisposeAll(tensors);
    }

    [Fact]
    public void Wrong_shape_names_the_tensor_and_the_config_fields()
    {
        var config = TinyConfig();
        config.Save(ModelFolder);
        var tensors = RandomTensors(config, seed: 4);
        tensors["model.layers.1.mlp.up_proj.weight"].Dispose();
        tensors["model.layers.1.mlp.up_proj.weight"] = zeros(17, 8);
        SafeTensors.Write(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName), tensors);

        var error = AssertUserError(() => ModelCheckpoint.Load(ModelFolder));
        Assert.Equal($"{ModelFolder}: model.layers.1.mlp.up_proj.weight has shape [17, 8] but config.json (intermediate_size 12, hidden_size 8) expects [12, 8].", error.Message);
        DisposeAll(tensors);
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        var config = TinyConfig();
        config.Save(ModelFolder);
        var tensors = RandomTensors(config, seed: 5);
        tensors.Remove("model.layers.1.self_attn.k_proj.weight", out var removed);
        removed!.Dispose();
        SafeTensors.Write(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName), tensors);

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), ModelFolder, "model.layers.1.self_attn.k_proj.weight is missing", "num_hidden_layers 2");
        DisposeAll(tensors);
    }

    [Fact]
    public void Unexpected_tensor_is_named()
    {
        var config = TinyConfig();
        config.Save(ModelFolder);
        var tensors = RandomTensors(config, seed: 6);
        tensors["model.layers.2.mlp.up_proj.weight"] = zeros(12, 8);
        SafeTensors.Write(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName), tensors);

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), "model.layers.2.mlp.up_proj.weight is not part of the model");
        DisposeAll(tensors);
    }

    [Fact]
    public void Saving_tensors_that_do_not_match_the_config_is_refused_before_writing()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 7);
        tensors["model.norm.weight"].Dispose();
        tensors["model.norm.weight"] = ones(9);
        AssertUserError(() => ModelCheckpoint.Save(ModelFolder, config, tensors), "model.norm.weight has shape [9]", "hidden_size 8", "expects [8]");
        Assert.False(Directory.Exists(ModelFolder));
        DisposeAll(tensors);
    }

    [Fact]
    public void Missing_config_field_is_named()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 8);
        ModelCheckpoint.Save(ModelFolder, config, tensors);
        var configPath = Path.Combine(ModelFolder, ModelConfig.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json.Remove("intermediate_size");
        File.WriteAllText(configPath, json.ToJsonString());

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), configPath, "\"intermediate_size\"");
        DisposeAll(tensors);
    }

    [Fact]
    public void Tied_model_loads_with_or_without_lm_head_and_never_returns_it()
    {
        var config = TinyConfig(tied: true);
        var tensors = RandomTensors(config, seed: 9);
        Assert.DoesNotContain(ModelCheckpoint.LmHeadName, tensors.Keys);
        ModelCheckpoint.Save(ModelFolder, config, tensors);
        using (var loaded = ModelCheckpoint.Load(ModelFolder))
        {
            AssertBitIdentical(tensors, loaded.Tensors);
            Assert.True(loaded.Config.TieWordEmbeddings);
        }

        // Some exporters write the shared classifier anyway.
        tensors[ModelCheckpoint.LmHeadName] = tensors["model.embed_tokens.weight"].clone();
        SafeTensors.Write(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName), tensors);
        using (var loaded = ModelCheckpoint.Load(ModelFolder))
        {
            Assert.DoesNotContain(ModelCheckpoint.LmHeadName, loaded.Tensors.Keys);
            Assert.Equal(tensors.Count - 1, loaded.Tensors.Count);
        }
        DisposeAll(tensors);
    }

    [Fact]
    public void Untied_model_without_lm_head_suggests_tying()
    {
        var config = TinyConfig(tied: false);
        config.Save(ModelFolder);
        var tensors = RandomTensors(config, seed: 10);
        tensors.Remove(ModelCheckpoint.LmHeadName, out var head);
        head!.Dispose();
        SafeTensors.Write(Path.Combine(ModelFolder, ModelCheckpoint.SingleFileName), tensors);

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), "lm_head.weight is missing", "tie_word_embeddings");
        DisposeAll(tensors);
    }

    [Fact]
    public void Missing_shard_is_a_user_error()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 11);
        ModelCheckpoint.Save(ModelFolder, config, tensors, maxShardBytes: 1024);
        var last = Directory.GetFiles(ModelFolder, "model-*-of-*.safetensors").Order().Last();
        File.Delete(last);

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), Path.GetFileName(last), "missing");
        DisposeAll(tensors);
    }

    [Fact]
    public void Index_pointing_outside_the_folder_is_refused()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 12);
        ModelCheckpoint.Save(ModelFolder, config, tensors, maxShardBytes: 1024);
        var indexPath = Path.Combine(ModelFolder, ModelCheckpoint.IndexFileName);
        var index = JsonNode.Parse(File.ReadAllText(indexPath))!;
        index["weight_map"]!["model.norm.weight"] = "../elsewhere.safetensors";
        File.WriteAllText(indexPath, index.ToJsonString());

        AssertUserError(() => ModelCheckpoint.Load(ModelFolder), "model.norm.weight", "not a file name beside the index");
        DisposeAll(tensors);
    }

    [Fact]
    public void Bf16_save_records_the_dtype_and_loads_as_float32()
    {
        var config = TinyConfig();
        var tensors = RandomTensors(config, seed: 13);
        ModelCheckpoint.Save(ModelFolder, config, tensors, dtype: SafeTensorsDtype.BF16);
        using var loaded = ModelCheckpoint.Load(ModelFolder);
        Assert.Equal("bfloat16", loaded.Config.TorchDtype);
        foreach (var (name, tensor) in tensors)
        {
            using var rounded = tensor.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
            Assert.True(BitIdentical(rounded, loaded.Tensors[name]), name);
        }
        DisposeAll(tensors);
    }
}
