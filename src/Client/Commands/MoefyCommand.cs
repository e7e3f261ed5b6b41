using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;

namespace Babel.Client.Commands;

/// <summary><c>babel moefy</c>: splits every FFN layer of a model into equal-size experts and writes <c>experts.json</c> beside it.</summary>
internal static class MoefyCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder (config.json + safetensors); experts.json is written into it.", Required = true };
        var experts = new Option<int>("--experts") { Description = "Experts per layer; must divide intermediate_size.", Required = true };
        var method = new Option<string>("--method") { Description = $"Partition method: {string.Join(" or ", MoEfication.Methods)}.", DefaultValueFactory = _ => MoEfication.BalancedKMeans };
        var seed = new Option<long>("--seed") { Description = "Seed of the k-means++ initialisation or of the random permutation.", DefaultValueFactory = _ => 0 };
        var engine = new EngineOptions();
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var command = new Command("moefy", "MoEfication: split each layer's FFN neurons into equal-size experts (experts.json beside the model); layers run as shards of a job.")
        {
            model, experts, method, seed, workers,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var directory = parse.GetValue(model)!;
            var expertCount = parse.GetValue(experts);
            var methodName = parse.GetValue(method)!;
            var seedValue = parse.GetValue(seed);
            // Cheap checks before loading the weights: a wrong E or method is reported at once.
            var config = ModelCheckpoint.Validate(directory);
            ExpertPartition.RequireDivisible(config.IntermediateSize, expertCount, directory);
            MoEfication.RequireMethod(methodName);

            var output = parse.InvocationConfiguration.Output;
            ExpertPartition partition;
            await using (var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken))
            {
                partition = await RunAsync(connection, directory, expertCount, methodName, seedValue, parse.InvocationConfiguration.Error, cancellationToken);
            }
            TorchRuntime.Initialize();
            using var loaded = CausalLanguageModel.Load(directory);

            output.WriteLine($"{methodName}, {expertCount} experts of {partition.NeuronsPerExpert} neurons, seed {seedValue}: {Path.Combine(directory, ExpertPartition.FileName)}");
            output.WriteLine("mean within-expert cosine similarity of [gate ‖ up] rows (higher = more coherent experts)");
            output.WriteLine($"{"layer",5}  {methodName,15}  {"random",8}");
            double sumMethod = 0, sumRandom = 0;
            for (var layer = 0; layer < partition.Layers; layer++)
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var rows = MoEfication.LayerRows(loaded, layer);
                // Another seed than the method's, so that --method random is compared with an independent random split.
                var random = MoEfication.PartitionLayer(rows, expertCount, MoEfication.Random, MoEfication.LayerSeed(seedValue + 1, layer));
                var ours = MoEfication.MeanWithinExpertSimilarity(rows, partition.ExpertOfNeuron[layer], expertCount);
                var baseline = MoEfication.MeanWithinExpertSimilarity(rows, random, expertCount);
                sumMethod += ours;
                sumRandom += baseline;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{layer,5}  {ours,15:F4}  {baseline,8:F4}"));
            }
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"mean",5}  {sumMethod / partition.Layers,15:F4}  {sumRandom / partition.Layers,8:F4}"));
            return 0;
        });
        return command;
    }

    /// <summary>Partitions every layer of the model as a shard of a job, then writes <c>experts.json</c> beside the model.</summary>
    public static async Task<ExpertPartition> RunAsync(EngineConnection connection, string directory, int experts, string method, long seed, TextWriter progress, CancellationToken cancellationToken)
    {
        var config = ModelCheckpoint.Validate(directory);
        var parameters = new MoefyJobParameters(await connection.Jobs.UploadFolderAsync(directory, "models", cancellationToken), experts, method, seed);
        var spec = JobClient.Spec(MoefyJob.KindName, MoefyJob.Serialize(parameters));
        var jobId = JobClient.DefaultJobId(spec);
        await JobProgress.RunAsync(connection, jobId, spec, progress, cancellationToken);
        var partition = await MoefyJob.AssembleAsync(connection.Store, jobId, parameters, config, cancellationToken);
        partition.Save(directory);
        return partition;
    }
}
