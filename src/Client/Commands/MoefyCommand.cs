using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;

namespace Babel.Client.Commands;

/// <summary><c>babel moefy</c>: splits every FFN layer of a model into equal-size experts and writes <c>experts.json</c> beside it.</summary>
internal static class MoefyCommand
{
    public static Command Create()
    {
        var job = new JobCommandOptions();
        var model = ModelOption.Create("Model folder (config.json + safetensors); experts.json is written into it.");
        var experts = new Option<int>("--experts") { Description = "Experts per layer; must divide intermediate_size.", Required = true };
        var method = new Option<string>("--method") { Description = $"Partition method: {string.Join(" or ", MoEfication.Methods)}.", DefaultValueFactory = _ => MoEfication.BalancedKMeans };
        var seed = new Option<long>("--seed") { Description = "Seed of the k-means++ initialisation or of the random permutation.", DefaultValueFactory = _ => 0 };
        var command = new Command("moefy", "MoEfication: split each layer's FFN neurons into equal-size experts (experts.json beside the model); layers run as shards of a job.")
        {
            model, experts, method, seed,
        };
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var directory = ModelOption.Folder(parse, model);
            return job.RunAsync(parse, kinds => kinds.Get<MoefyJob>(),
                (jobs, ct) => ExpertsWorkflows.MoefyParametersAsync(jobs, directory, parse.GetValue(experts), parse.GetValue(method)!, parse.GetValue(seed), ct),
                partition =>
                {
                    partition.Save(directory);
                    Write(partition, MoEfication.CoherenceVersusRandom(directory, partition), Path.Combine(directory, ExpertPartition.FileName), parse.InvocationConfiguration.Output);
                    return 0;
                }, cancellationToken);
        });
        return command;
    }

    /// <summary>Where the partition went, and per layer how coherent its experts are against a random split.</summary>
    private static void Write(ExpertPartition partition, IReadOnlyList<(double Partition, double Random)> coherence, string path, TextWriter output)
    {
        output.WriteLine($"{partition.Method}, {partition.Experts} experts of {partition.NeuronsPerExpert} neurons, seed {partition.Seed}: {path}");
        output.WriteLine("mean within-expert cosine similarity of [gate ‖ up] rows (higher = more coherent experts)");
        output.WriteLine($"{"layer",5}  {partition.Method,15}  {"random",8}");
        for (var layer = 0; layer < coherence.Count; layer++)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{layer,5}  {coherence[layer].Partition,15:F4}  {coherence[layer].Random,8:F4}"));
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"mean",5}  {coherence.Average(c => c.Partition),15:F4}  {coherence.Average(c => c.Random),8:F4}"));
    }
}
