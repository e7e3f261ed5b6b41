using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary><c>babel profile</c> (expert activation counts per language, as a job) and <c>babel report</c> (heatmaps and report.html).</summary>
internal static class ProfileCommand
{
    public static Command Create()
    {
        var defaults = new ProfileJobParameters("", "", [], "topk:4");
        var job = new JobCommandOptions();
        var model = ModelOption.Create("Model folder with tokenizer.json and experts.json (see 'babel moefy').");
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var experts = new Option<int?>("--experts") { Description = "Experts per layer; must match the model's experts.json." };
        var rule = new Option<string>("--rule") { Description = "Activation rule: topk:K or threshold:T.", DefaultValueFactory = _ => defaults.Rule };
        var split = new Option<string>("--split") { Description = "all, train or heldout.", DefaultValueFactory = _ => defaults.Split };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var maxTokens = new Option<long?>("--max-tokens-per-language") { Description = "Profile at most this many tokens of each language." };
        var shardTokens = new Option<int>("--shard-tokens") { Description = "Tokens per shard.", DefaultValueFactory = _ => defaults.ShardTokens };
        var sequenceLength = new Option<int>("--sequence-length") { Description = "Tokens per window fed to the model.", DefaultValueFactory = _ => defaults.SequenceLength };
        var countBos = new Option<bool>("--count-bos") { Description = "Count the BOS token that starts every document (not counted by default)." };
        var output = new Option<string>("--out") { Description = "Run folder: activations.json, manifest.json, heatmaps, report.html.", Required = true };
        var dtype = ModelOption.CreateJobDtype();
        var command = new Command("profile", "Count, per language, layer and expert, how often each expert activates (a distributed job); writes activations.json, manifest.json, heatmaps and report.html.")
        {
            model, corpus, languages, experts, rule, split, maxTokens, shardTokens, sequenceLength, countBos, dtype, output,
        };
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var request = defaults with
            {
                Languages = Modeling.Training.CorpusLanguages.Select(opened, parse.GetValue(languages)),
                Rule = parse.GetValue(rule)!,
                Split = parse.GetValue(split)!,
                MaxTokensPerLanguage = parse.GetValue(maxTokens),
                ShardTokens = parse.GetValue(shardTokens),
                SequenceLength = parse.GetValue(sequenceLength),
                CountBos = parse.GetValue(countBos),
                Dtype = parse.GetValue(dtype)!,
            };
            return job.RunAsync(parse, kinds => kinds.Get<ProfileJob>(),
                // The tokenize job it waits for first shows its progress as plain lines on stderr.
                (jobs, planHere, ct) => ExpertsWorkflows.ProfileParametersAsync(jobs, ModelOption.Folder(parse, model), opened.Directory, request, parse.GetValue(experts), ct, planHere,
                    JobProgressView.Lines(CommandConsole.For(parse.InvocationConfiguration.Error))),
                run =>
                {
                    var runDirectory = parse.GetValue(output)!;
                    var report = run.Save(runDirectory);
                    parse.InvocationConfiguration.Output.WriteLine($"{run.Summary()}: {Path.GetFullPath(Path.Combine(runDirectory, ActivationProfile.FileName))}, heatmaps and {report}");
                    return 0;
                }, cancellationToken);
        });
        return command;
    }

    public static Command Report()
    {
        var run = new Option<string>("--run") { Description = "Run folder written by 'babel profile'.", Required = true };
        var command = new Command("report", "Write the heatmaps and report.html of a profiling run.") { run };
        command.SetAction(parse =>
        {
            parse.InvocationConfiguration.Output.WriteLine($"wrote {ProfileRun.RewriteReport(parse.GetValue(run)!)}");
            return 0;
        });
        return command;
    }
}
