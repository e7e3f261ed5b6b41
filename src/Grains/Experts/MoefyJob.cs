using System.Globalization;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;

namespace Babel.Grains.Experts;

/// <summary>Parameters of a MoEfication job: the model's artifact key, experts per layer, method and seed.</summary>
public sealed record MoefyJobParameters(string Model, int Experts, string Method, long Seed);

/// <summary>One layer's expert assignment, as a shard writes it to the artifact store.</summary>
public sealed record LayerPartition(int Layer, int[] ExpertOfNeuron);

/// <summary>
/// MoEfication on the engine: layers are independent, so each layer is a shard (its slice is the layer index) and the
/// cluster partitions them on different workers; the result is the model's <see cref="ExpertPartition"/> (experts.json).
/// </summary>
public sealed class MoefyJob : JobKind<MoefyJobParameters, int, ExpertPartition>
{
    public const string KindName = "moefy";

    public override string Name => KindName;

    protected override void Validate(MoefyJobParameters p)
    {
        if (string.IsNullOrEmpty(p.Model)) throw new UserInputException("The moefy job parameters need a model.");
        MoEfication.RequireMethod(p.Method);
    }

    public static string LayerShardId(int layer) => string.Create(CultureInfo.InvariantCulture, $"layer-{layer:D3}");

    protected override async Task<IReadOnlyList<Shard<int>>> PlanAsync(MoefyJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var folder = await artifacts.LocalFolderAsync(p.Model, cancellationToken);
        var config = ModelCheckpoint.Validate(folder);
        ExpertPartition.RequireDivisible(config.IntermediateSize, p.Experts, folder);
        return [.. Enumerable.Range(0, config.NumHiddenLayers).Select(layer => new Shard<int>(LayerShardId(layer), layer, config.IntermediateSize))];
    }

    protected override ShardResult RunShard(ShardContext context, MoefyJobParameters p, Shard<int> shard, CancellationToken cancellationToken)
    {
        TorchRuntime.Initialize(context.Threads);
        var (model, _) = context.Models.Get(p.Model, context.LocalFolder(p.Model, cancellationToken));
        var assignment = MoEfication.PartitionLayer(model, shard.Slice, p.Experts, p.Method, p.Seed);
        return ShardResult.Of(new LayerPartition(shard.Slice, assignment), [KeyValuePair.Create("layers", 1L)]);
    }

    /// <summary>Every layer's shard result, in layer order (the plan has one shard per layer).</summary>
    public override async Task<ExpertPartition> AssembleAsync(FinishedJob<MoefyJobParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var results = await job.ReadShardsAsync<LayerPartition>(Enumerable.Range(0, job.Status.Shards).Select(LayerShardId), cancellationToken);
        var layers = results.Select(r => r.ExpertOfNeuron).ToArray();
        return new ExpertPartition
        {
            Experts = p.Experts, IntermediateSize = layers[0].Length, Method = p.Method, Seed = p.Seed, ExpertOfNeuron = layers,
        }.Validate($"job {job.JobId}");
    }

    public override void Save(ExpertPartition result, string directory)
    {
        Directory.CreateDirectory(directory);
        result.Save(directory);
    }

    public override string Summary(ExpertPartition result) =>
        string.Create(CultureInfo.InvariantCulture, $"{result.Method}, {result.Layers} layers × {result.Experts} experts of {result.NeuronsPerExpert} neurons, seed {result.Seed}");
}
