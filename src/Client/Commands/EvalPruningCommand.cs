using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel eval-pruning</c>: held-out perplexity of every pruning strategy and rate, as a job on the engine.</summary>
internal static class EvalPruningCommand
{
    public static Command Create()
    {
        var job = new JobCommandOptions();
        var model = ModelOption.Create("Model folder the run profiled.");
        var run = new Option<string>("--run") { Description = "Profiling run folder (activations.json) of this model.", Required = true };
        var corpus = new Option<string?>("--corpus") { Description = "Corpus folder to evaluate on (default: the one the run profiled)." };
        var rates = new Option<string>("--rates") { Description = "Comma-separated pruning rates in (0, 1).", DefaultValueFactory = _ => "0.1,0.2,0.3,0.4,0.5" };
        var strategies = new Option<string>("--strategies") { Description = "Comma-separated: frequency, random, layerwise, concentration.", DefaultValueFactory = _ => string.Join(",", ExpertPruning.Strategies) };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the run)." };
        var seeds = new Option<int>("--seeds") { Description = "Seeds the random strategy is averaged over.", DefaultValueFactory = _ => 3 };
        var split = new Option<string>("--split") { Description = "Split to score: heldout (default), train or all.", DefaultValueFactory = _ => "heldout" };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var dtype = ModelOption.CreateJobDtype();
        var output = new Option<string?>("--out") { Description = "Output folder (default: RUN/pruning, which the run's report.html shows)." };
        var command = new Command("eval-pruning", "Held-out perplexity per language of frequency-guided, random and layer-wise expert pruning at several rates (a distributed job); writes a table and plots.")
        {
            model, run, corpus, rates, strategies, languages, seeds, split, dtype, output,
        };
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var runDirectory = parse.GetValue(run)!;
            var request = new PruningRequest(
                ParseRates(parse.GetValue(rates)!),
                [.. Split(parse.GetValue(strategies)!).Select(ExpertPruning.RequireStrategy)],
                parse.GetValue(languages) is { } list ? Split(list) : null,
                parse.GetValue(seeds),
                parse.GetValue(split)!,
                parse.GetValue(dtype)!);
            var error = parse.InvocationConfiguration.Error;
            return job.RunAsync(parse, kinds => kinds.Get<PruningEvaluationJob>(),
                (jobs, planHere, ct) => ExpertsWorkflows.PruningParametersAsync(jobs, ModelOption.Folder(parse, model), runDirectory, parse.GetValue(corpus), request, error, ct, planHere,
                    JobProgressView.Lines(CommandConsole.For(error))),
                curves =>
                {
                    var outDirectory = parse.GetValue(output) ?? Path.Combine(runDirectory, ProfileRun.PruningFolder);
                    AtomicFile.WriteDirectory(outDirectory, temporary => curves.Save(temporary));
                    error.WriteLine($"wrote {Path.GetFullPath(Path.Combine(outDirectory, PruningCurves.FileName))}, {PruningCurves.TableFileName} and plots");
                    parse.InvocationConfiguration.Output.WriteLine(curves.Reading());
                    parse.InvocationConfiguration.Output.WriteLine($"report: {ProfileRun.RewriteReport(runDirectory)}");
                    return 0;
                }, cancellationToken);
        });
        return command;
    }

    public static List<string> Split(string list) => [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    private static List<double> ParseRates(string list)
    {
        var rates = new List<double>();
        foreach (var item in Split(list))
        {
            if (!double.TryParse(item, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate))
            {
                throw new UserInputException($"'{item}' in --rates is not a number; give fractions such as 0.1,0.2.");
            }
            if (!(rate > 0 && rate < 1)) throw new UserInputException($"The pruning rate {item} is outside (0, 1); give the fraction of experts to prune, e.g. 0.2.");
            rates.Add(rate);
        }
        if (rates.Count == 0) throw new UserInputException("--rates names no rate.");
        return [.. rates.Distinct().Order()];
    }
}
