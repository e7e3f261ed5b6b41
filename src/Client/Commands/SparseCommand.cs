using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel sparse</c>: held-out perplexity when every token runs only its top-K experts per layer (centroid, frequency,
/// oracle or gate-mean router), and the forward speed of the sparse computation measured by one shard of the job, on the worker that ran it.
/// </summary>
internal static class SparseCommand
{
    public static Command Create()
    {
        var job = new JobCommandOptions();
        var model = ModelOption.Create("Model folder with tokenizer.json and experts.json (see 'babel moefy').");
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder to evaluate on.", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var topK = new Option<string>("--top-k") { Description = "Comma-separated K: experts each token runs per layer.", DefaultValueFactory = _ => "1,2,4,8" };
        var run = new Option<string?>("--run") { Description = "Profiling run folder (activations.json) of this model: the frequency router keeps each language's top-K experts from it." };
        var routers = new Option<string?>("--routers") { Description = "Comma-separated: centroid, frequency (needs --run), oracle, gate-mean (default: centroid, frequency with --run, oracle)." };
        var split = new Option<string>("--split") { Description = "Split to score: heldout (default), train or all.", DefaultValueFactory = _ => "heldout" };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var dtype = ModelOption.CreateJobDtype();
        var output = new Option<string>("--out") { Description = "Output folder: sparse.json, sparse.md, sparse.png.", Required = true };
        var command = new Command("sparse", "Perplexity with only the top-K experts per token (centroid, frequency, oracle or gate-mean router) against the fraction of FFN compute kept, and its measured speed (a distributed job).")
        {
            model, corpus, run, languages, topK, routers, split, dtype, output,
        };
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var runDirectory = parse.GetValue(run);
            var routerList = parse.GetValue(routers) is { } list ? EvalPruningCommand.Split(list)
                : [.. SparseExpertActivation.DefaultRouters.Where(r => runDirectory is not null || r != SparseExpertActivation.FrequencyRouter)];
            var request = new SparseRequest(
                ParseTopK(parse.GetValue(topK)!),
                routerList,
                Modeling.Training.CorpusLanguages.Select(opened, parse.GetValue(languages)),
                parse.GetValue(split)!,
                parse.GetValue(dtype)!);
            return job.RunAsync(parse, kinds => kinds.Get<SparseActivationJob>(),
                (jobs, planHere, ct) => ExpertsWorkflows.SparseParametersAsync(jobs, ModelOption.Folder(parse, model), opened.Directory, request, runDirectory,
                    parse.InvocationConfiguration.Error, ct, planHere,
                    JobProgressView.Lines(CommandConsole.For(parse.InvocationConfiguration.Error))),
                curves =>
                {
                    var outDirectory = parse.GetValue(output)!;
                    AtomicFile.WriteDirectory(outDirectory, curves.Save);
                    parse.InvocationConfiguration.Error.WriteLine($"wrote {Path.GetFullPath(Path.Combine(outDirectory, SparseActivationCurves.FileName))}, {SparseActivationCurves.TableFileName} and {SparseActivationCurves.Image}");
                    parse.InvocationConfiguration.Output.WriteLine(curves.Reading());
                    return 0;
                }, cancellationToken);
        });
        return command;
    }

    private static List<int> ParseTopK(string list)
    {
        var values = new List<int>();
        foreach (var item in EvalPruningCommand.Split(list))
        {
            if (!int.TryParse(item, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k)) throw new UserInputException($"'{item}' in --top-k is not a whole number.");
            values.Add(k);
        }
        if (values.Count == 0) throw new UserInputException("--top-k names no K.");
        return [.. values.Distinct().Order()];
    }
}
