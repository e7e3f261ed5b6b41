using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Text2Tree;
using Babel.Modeling.Text2Tree;
using Babel.Storage;
using Babel.Storage.Icpc;

namespace Babel.Client.Commands;

/// <summary><c>babel text2tree grid</c>: every (method, λ, τ, seed) as a shard of one job; results table and bucket plot.</summary>
internal static class Text2TreeGridCommand
{
    public static Command Create()
    {
        var shared = new Text2TreeCommand.TrainingOptions();
        var job = new JobCommandOptions();
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods.", DefaultValueFactory = _ => string.Join(",", Text2TreeMethods.All) };
        var seeds = new Option<int>("--seeds") { Description = "Seeds 1..N per configuration.", DefaultValueFactory = _ => 3 };
        var lambdas = new Option<string>("--lambda") { Description = "Comma-separated λ values for text2tree and text2tree-ssl (text2tree at 0 is DML only; text2tree-ssl skips 0).", DefaultValueFactory = _ => new Text2TreeOptions().Lambda.ToString(CultureInfo.InvariantCulture) };
        var taus = new Option<string>("--tau") { Description = "Comma-separated τ values for text2tree and text2tree-ssl.", DefaultValueFactory = _ => new Text2TreeOptions().Tau.ToString(CultureInfo.InvariantCulture) };
        var output = new Option<string?>("--out") { Description = $"Folder for {GridReport.JsonFile}, {GridReport.MarkdownFile}, {GridReport.HtmlFile} and {GridReport.PlotFile} (with --no-wait: 'babel result JOB --out DIR')." };
        var command = new Command("grid", "Run a grid of methods × λ × τ × seeds as shards of a job (resumable: a rerun continues the same job).")
        {
            methods, seeds, lambdas, taus, output,
        };
        shared.AddTo(command);
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var seedCount = parse.GetValue(seeds);
            if (seedCount <= 0) throw new UserInputException($"--seeds must be positive (got {seedCount}).");
            var dataDirectory = parse.GetValue(shared.Data)!;
            // Reading the dataset first reports a bad folder before the engine starts.
            CodedTextDataset.Read(dataDirectory);
            var baseOptions = shared.Read(parse);
            var methodList = parse.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var lambdaList = Numbers(parse.GetValue(lambdas)!, "--lambda");
            var tauList = Numbers(parse.GetValue(taus)!, "--tau");
            return job.RunAsync(parse, kinds => kinds.Get<Text2TreeGridJob>(), async (jobs, ct) => new Text2TreeGridParameters(
                await jobs.UploadFolderAsync(dataDirectory, "datasets", ct), baseOptions, methodList,
                [.. Enumerable.Range(1, seedCount).Select(s => (long)s)], lambdaList, tauList), report =>
            {
                var writer = parse.InvocationConfiguration.Output;
                writer.Write(report.Markdown());
                if (parse.GetValue(output) is { } folder)
                {
                    report.Save(folder);
                    writer.WriteLine($"wrote {Path.Combine(Path.GetFullPath(folder), GridReport.MarkdownFile)}, {GridReport.HtmlFile}, {GridReport.JsonFile} and {GridReport.PlotFile}");
                }
                return 0;
            }, cancellationToken, Text2TreeGridJob.SubmitOptions);
        });
        return command;
    }

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
