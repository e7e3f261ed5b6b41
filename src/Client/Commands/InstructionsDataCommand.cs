using System.CommandLine;
using Babel.Modeling.Training;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary><c>babel data instructions</c>: translation instructions from an aligned corpus's train documents, as JSONL for <c>babel finetune</c>.</summary>
internal static class InstructionsDataCommand
{
    public static Command Create()
    {
        var corpus = new Option<string>("--corpus") { Description = "Aligned corpus folder (e.g. from 'babel data udhr'); only its train documents are used.", Required = true };
        var output = new Option<string>("--out") { Description = "JSONL file to write: one {\"id\", \"instruction\", \"response\"} per line.", Required = true };
        var source = new Option<string>("--source") { Description = "Language of the text to translate.", DefaultValueFactory = _ => "eng" };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated target languages (default: every language of the corpus but the source)." };
        var command = new Command("instructions", $"Write translation instructions (\"{string.Format(System.Globalization.CultureInfo.InvariantCulture, TranslationInstructions.Template, "French", "...")}\" → French text) from an aligned corpus, train split only.")
        {
            corpus, output, source, languages,
        };
        command.SetAction(parse =>
        {
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var from = parse.GetValue(source)!;
            CorpusLanguages.Select(opened, from);
            var targets = parse.GetValue(languages) is { } list
                ? CorpusLanguages.Select(opened, list)
                : [.. opened.Manifest.Languages.Select(l => l.Code).Where(c => c != from)];
            var instructions = TranslationInstructions.Build(opened, from, targets);
            var path = parse.GetValue(output)!;
            TranslationInstructions.Write(path, instructions);
            parse.InvocationConfiguration.Output.WriteLine($"wrote {instructions.Count} translation instructions from {from} into {targets.Count} languages (train documents only) to {Path.GetFullPath(path)}");
            return 0;
        });
        return command;
    }
}
