using System.CommandLine;
using System.Globalization;
using Babel.Grains.Text2Tree;
using Babel.Modeling.Text2Tree;

namespace Babel.Client.Commands;

/// <summary><c>babel bench text2tree</c>: training examples/s per method, and grid throughput with 1 and 2 workers.</summary>
internal static class Text2TreeBench
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Dataset folder (e.g. from 'babel data icpc').", Required = true };
        var steps = new Option<int>("--steps") { Description = "Training steps timed per method.", DefaultValueFactory = _ => 30 };
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods to time.", DefaultValueFactory = _ => string.Join(",", Text2TreeMethods.All) };
        var gridShards = new Option<int>("--grid-shards") { Description = "Shards (finetune seeds) of the 1-vs-2-worker grid comparison; 0 skips it.", DefaultValueFactory = _ => 4 };
        var gridSteps = new Option<int>("--grid-steps") { Description = "Steps per grid shard.", DefaultValueFactory = _ => 20 };
        var work = new Option<string>("--work") { Description = "Scratch folder (run folders and engine stores); deleted first.", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "babel-bench-text2tree") };
        var command = new Command("text2tree", "Text2Tree training examples/s per method (tiny encoder, batch 64, 1 thread) and grid throughput with 1 vs 2 workers.")
        {
            data, steps, methods, gridShards, gridSteps, work,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var writer = parse.InvocationConfiguration.Output;
            var root = Path.GetFullPath(parse.GetValue(work)!);
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
            var dataDirectory = parse.GetValue(data)!;
            writer.WriteLine($"{"method",-10} {"examples/s",12}");
            var methodList = parse.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (var measured in Text2TreeBenchmark.TrainingThroughput(dataDirectory, methodList, parse.GetValue(steps), root, cancellationToken))
            {
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{measured.Method,-10} {measured.ExamplesPerSecond,12:F1}"));
            }
            var shards = parse.GetValue(gridShards);
            if (shards <= 0) return 0;
            foreach (var workers in new[] { 1, 2 })
            {
                double seconds;
                await using (var connection = await EngineConnection.OpenAsync(cluster: false, Path.Combine(root, $"store-{workers}"), workers, cancellationToken))
                {
                    seconds = await Text2TreeGridBenchmark.WallSecondsAsync(connection.Jobs, dataDirectory, shards, parse.GetValue(gridSteps), cancellationToken);
                }
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"grid, {workers} worker(s): {shards} runs × {parse.GetValue(gridSteps)} steps in {seconds:F1} s = {shards * 60 / seconds:F2} runs/min"));
            }
            return 0;
        });
        return command;
    }
}
