using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Grains.Text2Tree;
using Babel.Modeling.Text2Tree;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel text2tree grid</c>: every (method, λ, τ, seed) as a shard of one job; results table and bucket plot.</summary>
internal static class Text2TreeGridCommand
{
    public static Command Create()
    {
        var shared = new Text2TreeCommand.TrainingOptions();
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods.", DefaultValueFactory = _ => string.Join(",", Text2TreeMethods.All) };
        var seeds = new Option<int>("--seeds") { Description = "Seeds 1..N per configuration.", DefaultValueFactory = _ => 3 };
        var lambdas = new Option<string>("--lambda") { Description = "Comma-separated λ values for text2tree.", DefaultValueFactory = _ => new Text2TreeOptions().Lambda.ToString(CultureInfo.InvariantCulture) };
        var taus = new Option<string>("--tau") { Description = "Comma-separated τ values for text2tree.", DefaultValueFactory = _ => new Text2TreeOptions().Tau.ToString(CultureInfo.InvariantCulture) };
        var output = new Option<string>("--out") { Description = "Folder for results.json, results.md, results.html and buckets.png.", Required = true };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo (runs in parallel).", DefaultValueFactory = _ => 1 };
        var engine = new EngineOptions();
        var command = new Command("grid", "Run a grid of methods × λ × τ × seeds as shards of a job (resumable: a rerun continues the same job).")
        {
            methods, seeds, lambdas, taus, output, workers,
        };
        shared.AddTo(command);
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var seedCount = parse.GetValue(seeds);
            if (seedCount <= 0) throw new UserInputException($"--seeds must be positive (got {seedCount}).");
            var dataDirectory = parse.GetValue(shared.Data)!;
            // Reading the dataset first reports a bad folder before the engine starts.
            CodedTextDatasetCheck(dataDirectory);
            var baseOptions = shared.Read(parse);
            var methodList = parse.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var lambdaList = Numbers(parse.GetValue(lambdas)!, "--lambda");
            var tauList = Numbers(parse.GetValue(taus)!, "--tau");
            var error = parse.InvocationConfiguration.Error;
            IReadOnlyList<Text2TreeMetrics> runs;
            string jobId;
            await using (var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken))
            {
                (jobId, runs) = await RunAsync(connection, dataDirectory, baseOptions, methodList, seedCount, lambdaList, tauList, error, cancellationToken);
            }
            var directory = Path.GetFullPath(parse.GetValue(output)!);
            var rows = GridReport.Write(directory, runs, new { job = jobId, data = Path.GetFullPath(dataDirectory), options = baseOptions });
            var writer = parse.InvocationConfiguration.Output;
            writer.Write(GridReport.Markdown(rows, runs));
            writer.WriteLine($"wrote {Path.Combine(directory, GridReport.MarkdownFile)}, {GridReport.HtmlFile}, {GridReport.JsonFile} and {GridReport.PlotFile}");
            return 0;
        });
        return command;
    }

    /// <summary>Uploads the dataset, runs the grid job to the end (or continues it) and returns every run's metrics in plan order.</summary>
    public static async Task<(string JobId, IReadOnlyList<Text2TreeMetrics> Runs)> RunAsync(EngineConnection connection, string dataDirectory, Text2TreeOptions baseOptions,
        string[] methods, int seeds, double[] lambdas, double[] taus, TextWriter progress, CancellationToken cancellationToken)
    {
        var data = await connection.Jobs.UploadFolderAsync(dataDirectory, "datasets", cancellationToken);
        var parameters = new Text2TreeGridParameters(data, baseOptions, methods, [.. Enumerable.Range(1, seeds).Select(s => (long)s)], lambdas, taus);
        var json = JobParameters.Serialize(parameters);
        Text2TreeGridJob.ParseParameters(json);
        // A run takes minutes: a lease long enough that a busy worker is not mistaken for a dead one.
        var spec = JobClient.Spec(Text2TreeGridJob.KindName, json, leaseDuration: TimeSpan.FromMinutes(30));
        var jobId = JobClient.DefaultJobId(spec);
        await JobProgress.RunAsync(connection, jobId, spec, progress, cancellationToken);
        return (jobId, await Text2TreeGridJob.AssembleAsync(connection.Store, jobId, parameters, cancellationToken));
    }

    private static void CodedTextDatasetCheck(string directory) => Storage.Icpc.CodedTextDataset.Read(directory);

    private static double[] Numbers(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new List<double>();
        foreach (var part in parts)
        {
            if (!double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                throw new UserInputException($"{option} value '{part}' is not a number; write numbers like 0.5,0.3.");
            }
            values.Add(value);
        }
        if (values.Count == 0) throw new UserInputException($"{option} needs at least one value.");
        return [.. values];
    }
}
