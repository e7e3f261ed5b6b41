using System.Collections.Immutable;
using System.Globalization;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Experts;

/// <summary>Parameters of a MoEfication job: the model's artifact key, experts per layer, method and seed.</summary>
public sealed record MoefyJobParameters(string Model, int Experts, string Method, long Seed);

/// <summary>One layer's expert assignment, as a shard writes it to the artifact store.</summary>
public sealed record LayerPartition(int Layer, int[] ExpertOfNeuron);

/// <summary>
/// MoEfication on the engine: layers are independent, so each layer is a shard and the cluster partitions them on
/// different workers; the client assembles <c>experts.json</c> from the shards' results.
/// </summary>
public sealed class MoefyJob : IJobKind
{
    public const string KindName = "moefy";

    public string Name => KindName;

    public static string Serialize<T>(T value) => JobParameters.Serialize(value);

    public static MoefyJobParameters ParseParameters(string json)
    {
        var p = JobParameters.Deserialize<MoefyJobParameters>(json, KindName);
        if (string.IsNullOrEmpty(p.Model)) throw new UserInputException("The moefy job parameters need a model.");
        MoEfication.RequireMethod(p.Method);
        return p;
    }

    public static string LayerShardId(int layer) => string.Create(CultureInfo.InvariantCulture, $"layer-{layer:D3}");

    public async Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var folder = await artifacts.LocalFolderAsync(p.Model, cancellationToken);
        var config = ModelCheckpoint.Validate(folder);
        ExpertPartition.RequireDivisible(config.IntermediateSize, p.Experts, folder);
        return [.. Enumerable.Range(0, config.NumHiddenLayers).Select(layer => new ShardSpec(LayerShardId(layer), Serialize(layer), config.IntermediateSize))];
    }

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var layer = JobParameters.Deserialize<int>(shard.Parameters, KindName);
        TorchRuntime.Initialize(context.Threads);
        var (model, _) = context.Models.Get(p.Model, context.LocalFolder(p.Model, cancellationToken));
        using var scope = TorchSharp.torch.NewDisposeScope();
        var assignment = MoEfication.PartitionLayer(MoEfication.LayerRows(model, layer), p.Experts, p.Method, MoEfication.LayerSeed(p.Seed, layer));
        var content = JobParameters.SerializeToUtf8Bytes(new LayerPartition(layer, assignment));
        return new ShardResult(content, ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("layers", 1L)]));
    }

    /// <summary>Reads every layer's result of a finished job and assembles the partition.</summary>
    public static async Task<ExpertPartition> AssembleAsync(IArtifactStore store, string jobId, MoefyJobParameters p, ModelConfig config, CancellationToken cancellationToken)
    {
        var results = await ShardArtifacts.ReadAsync<LayerPartition>(store, jobId, Enumerable.Range(0, config.NumHiddenLayers).Select(LayerShardId), cancellationToken);
        var layers = results.Select(r => r.ExpertOfNeuron).ToArray();
        return new ExpertPartition
        {
            Experts = p.Experts, IntermediateSize = config.IntermediateSize, Method = p.Method, Seed = p.Seed, ExpertOfNeuron = layers,
        }.Validate($"job {jobId}");
    }
}
