using System.CommandLine;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Training;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel perplexity</c>: per-language mean NLL, perplexity and bits per byte, as a job on the engine.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var defaults = new PerplexityJobParameters("", "", []);
        var job = new JobCommandOptions();
        var model = ModelOption.Create("Model folder with tokenizer.json.");
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var split = new Option<string>("--split") { Description = "heldout, train or all.", DefaultValueFactory = _ => defaults.Split };
        split.AcceptOnlyFromAmong("heldout", "train", "all");
        var documentsPerShard = new Option<int>("--documents-per-shard") { Description = "Documents per shard (the unit of work and of retry).", DefaultValueFactory = _ => defaults.DocumentsPerShard };
        var format = FormatOption.Create("table", FormatOption.Json);
        var output = new Option<string?>("--out") { Description = $"Folder to write {PerplexityReport.FileName} into." };
        var dtype = ModelOption.CreateJobDtype();
        var command = new Command("perplexity", "Per-language mean negative log-likelihood and perplexity of a model on a corpus, as a distributed job.")
        {
            model, corpus, languages, split, documentsPerShard, dtype, format, output,
        };
        job.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var modelDirectory = ModelOption.Folder(parse, model);
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var codes = CorpusLanguages.Select(opened, parse.GetValue(languages));
            ModelCheckpoint.ValidateWithTokenizer(modelDirectory);
            return job.RunAsync(parse, kinds => kinds.Get<PerplexityJob>(), async (jobs, planHere, ct) =>
            {
                var p = defaults with
                {
                    Model = await jobs.UploadFolderAsync(modelDirectory, "models", ct),
                    Corpus = await jobs.UploadFolderAsync(opened.Directory, "corpora", ct),
                    Languages = codes,
                    Split = parse.GetValue(split)!,
                    DocumentsPerShard = parse.GetValue(documentsPerShard),
                    Dtype = parse.GetValue(dtype)!,
                };
                // Checked before the tokenize job runs: a typo costs one sentence, not a job.
                jobs.Kinds.Get<PerplexityJob>().CheckOptions(p);
                // The plan slices each language's documents, which the tokenize job counts on a worker.
                return p with
                {
                    Streams = await jobs.Kinds.Get<TokenizeJob>().StreamsAsync(jobs, p.TokenizeParameters(), modelDirectory, opened.Directory, planHere,
                        JobProgressView.Lines(CommandConsole.For(parse.InvocationConfiguration.Error)), ct),
                };
            }, report =>
            {
                if (parse.GetValue(output) is { } folder) report.Save(folder);
                Write(report, parse.GetValue(format) == FormatOption.Json, parse.InvocationConfiguration.Output);
                return 0;
            }, cancellationToken);
        });
        return command;
    }

    public static void Write(PerplexityReport report, bool json, TextWriter writer)
    {
        if (json)
        {
            writer.WriteLine(report.ToJson());
            return;
        }
        var table = new Table().AddColumns("language", "documents", "tokens", "mean NLL", "perplexity", "bits/byte");
        foreach (var r in report.Languages)
        {
            table.AddRow(r.Language, r.Documents.ToString(CultureInfo.InvariantCulture), r.Tokens.ToString(CultureInfo.InvariantCulture),
                r.MeanNll.ToString("F3", CultureInfo.InvariantCulture), r.Perplexity.ToString("F1", CultureInfo.InvariantCulture), r.BitsPerByte.ToString("F3", CultureInfo.InvariantCulture));
        }
        CommandConsole.For(writer).Write(table);
    }
}
