using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel perplexity</c>: mean NLL, perplexity and bits per byte of a model per language.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder with tokenizer.json.", Required = true };
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var split = new Option<string>("--split") { Description = "heldout, train or all.", DefaultValueFactory = _ => "heldout" };
        split.AcceptOnlyFromAmong("heldout", "train", "all");
        var output = new Option<string>("--output") { Description = "table or json.", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var command = new Command("perplexity", "Per-language mean negative log-likelihood and perplexity of a model on a corpus.") { model, corpus, languages, split, output };
        command.SetAction(parse =>
        {
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var codes = ModelWorkflows.SelectLanguages(opened, parse.GetValue(languages));
            var which = parse.GetValue(split) switch { "train" => CorpusSplit.Train, "all" => CorpusSplit.All, _ => CorpusSplit.Heldout };
            TorchRuntime.Initialize();
            var directory = parse.GetValue(model)!;
            using var loaded = CausalLanguageModel.Load(directory);
            using var tokenizer = HuggingFaceTokenizer.Load(directory);
            if (tokenizer.VocabSize > loaded.Config.VocabSize)
            {
                throw new UserInputException($"{directory}: tokenizer.json has {tokenizer.VocabSize} tokens but the model's vocab_size is {loaded.Config.VocabSize}; use the tokenizer the model was trained with.");
            }
            var results = codes.Select(code => Perplexity.Evaluate(loaded, tokenizer, code, opened.ReadDocuments(code, which).Select(d => d.Text))).ToList();
            Write(results, parse.GetValue(output) == "json", parse.InvocationConfiguration.Output);
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
