using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
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
        var command = new Command("moefy", "MoEfication: split each layer's FFN neurons into equal-size experts (experts.json beside the model).")
        {
            model, experts, method, seed,
        };
        command.SetAction(parse =>
        {
            var directory = parse.GetValue(model)!;
            var expertCount = parse.GetValue(experts);
            var methodName = parse.GetValue(method)!;
            var seedValue = parse.GetValue(seed);
            // Cheap checks before loading the weights: a wrong E or method is reported at once.
            var config = ModelCheckpoint.Validate(directory);
            ExpertPartition.RequireDivisible(config.IntermediateSize, expertCount, directory);
            MoEfication.RequireMethod(methodName);

            TorchRuntime.Initialize();
            using var loaded = CausalLanguageModel.Load(directory);
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            var clock = Stopwatch.StartNew();
            var partition = MoEfication.Partition(loaded, expertCount, methodName, seedValue, new LayerProgress(error, config.NumHiddenLayers, clock));
            partition.Save(directory);

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

    /// <summary>One line per finished layer on stderr, so a long run on a large model shows it is moving.</summary>
    private sealed class LayerProgress(TextWriter error, int layers, Stopwatch clock) : IProgress<int>
    {
        public void Report(int value) =>
            error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"moefy: layer {value}/{layers} done ({clock.Elapsed.TotalSeconds:F1} s)"));
    }
}
