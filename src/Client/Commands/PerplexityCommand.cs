using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Contracts;
using Babel.Grains.Jobs;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel perplexity</c>: per-language mean NLL, perplexity and bits per byte, as a job on the engine.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var defaults = new PerplexityJobParameters("", "", []);
        var engine = new EngineOptions();
        var model = new Option<string>("--model") { Description = "Model folder with tokenizer.json.", Required = true };
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var split = new Option<string>("--split") { Description = "heldout, train or all.", DefaultValueFactory = _ => defaults.Split };
        split.AcceptOnlyFromAmong("heldout", "train", "all");
        var documentsPerShard = new Option<int>("--documents-per-shard") { Description = "Documents per shard (the unit of work and of retry).", DefaultValueFactory = _ => defaults.DocumentsPerShard };
        var jobId = new Option<string?>("--job-id") { Description = "Job id; default: derived from the inputs, so rerunning resumes the same job." };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--output") { Description = "table or json.", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var command = new Command("perplexity", "Per-language mean negative log-likelihood and perplexity of a model on a corpus, as a distributed job.")
        {
            model, corpus, languages, split, documentsPerShard, jobId, workers, output,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var modelDirectory = parse.GetValue(model)!;
            var corpusDirectory = parse.GetValue(corpus)!;
            var opened = Corpus.Open(corpusDirectory);
            var codes = ModelWorkflows.SelectLanguages(opened, parse.GetValue(languages));
            var config = ModelCheckpoint.Validate(modelDirectory);
            using (var tokenizer = HuggingFaceTokenizer.Load(modelDirectory))
            {
                if (tokenizer.VocabSize > config.VocabSize)
                {
                    throw new UserInputException($"{modelDirectory}: tokenizer.json has {tokenizer.VocabSize} tokens but the model's vocab_size is {config.VocabSize}; use the tokenizer the model was trained with.");
                }
            }
            if (parse.GetValue(documentsPerShard) < 1) throw new UserInputException("--documents-per-shard must be at least 1.");

            await using var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken);
            var parameters = defaults with
            {
                Model = await connection.Jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken),
                Corpus = await connection.Jobs.UploadFolderAsync(corpusDirectory, "corpora", cancellationToken),
                Languages = codes,
                Split = parse.GetValue(split)!,
                DocumentsPerShard = parse.GetValue(documentsPerShard),
            };
            var spec = JobClient.Spec(PerplexityJob.KindName, PerplexityJob.Serialize(parameters));
            var id = parse.GetValue(jobId) ?? JobClient.DefaultJobId(spec);
            var status = await JobProgress.RunAsync(connection, id, spec, parse.InvocationConfiguration.Error, cancellationToken);
            Write(PerplexityJob.Results(codes, status.Totals), parse.GetValue(output) == "json", parse.InvocationConfiguration.Output);
            return 0;
        });
        return command;
    }

    public static void Write(IReadOnlyList<PerplexityResult> results, bool json, TextWriter writer)
    {
        if (json)
        {
            var languages = new JsonObject();
            foreach (var r in results)
            {
                languages[r.Language] = new JsonObject
                {
                    ["documents"] = r.Documents, ["tokens"] = r.Tokens, ["bytes"] = r.Bytes,
                    ["mean_nll"] = r.MeanNll, ["perplexity"] = r.Perplexity, ["bits_per_byte"] = r.BitsPerByte,
                };
            }
            writer.WriteLine(new JsonObject { ["languages"] = languages }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return;
        }
        var table = new Table().AddColumns("language", "documents", "tokens", "mean NLL", "perplexity", "bits/byte");
        foreach (var r in results)
        {
            table.AddRow(r.Language, r.Documents.ToString(CultureInfo.InvariantCulture), r.Tokens.ToString(CultureInfo.InvariantCulture),
                r.MeanNll.ToString("F3", CultureInfo.InvariantCulture), r.Perplexity.ToString("F1", CultureInfo.InvariantCulture), r.BitsPerByte.ToString("F3", CultureInfo.InvariantCulture));
        }
        CommandConsole.For(writer).Write(table);
    }
}

/// <summary>Submits a job and follows it to the end with a progress line on stderr.</summary>
internal static class JobProgress
{
    public static async Task<JobStatus> RunAsync(EngineConnection connection, string jobId, JobSpec spec, TextWriter progressWriter, CancellationToken cancellationToken)
    {
        var submitted = await connection.Jobs.SubmitAsync(jobId, spec, cancellationToken);
        var console = CommandConsole.For(progressWriter);
        console.MarkupLineInterpolated($"job {jobId}: {submitted.Shards} shards ({submitted.Done} already done); 'babel status {jobId}' shows it");
        var lastReported = -1;
        var progress = new InlineProgress<JobStatus>(status =>
        {
            if (status.Done == lastReported) return;
            lastReported = status.Done;
            console.MarkupLine("[grey]" + Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"{status.Done}/{status.Shards} shards done, {status.Leased} running, {status.ItemsPerSecond:F1} items/s")) + "[/]");
        });
        try
        {
            return await connection.Jobs.WaitAsync(jobId, progress, TimeSpan.FromMilliseconds(250), cancellationToken);
        }
        catch (JobFailedException e)
        {
            throw new UserInputException(e.Message, e);
        }
    }

    private sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
