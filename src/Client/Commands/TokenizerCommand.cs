using System.CommandLine;
using Babel.Modeling.Training;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary><c>babel tokenizer train</c>: a byte-level BPE tokenizer from a corpus, saved as Hugging Face <c>tokenizer.json</c>.</summary>
internal static class TokenizerCommand
{
    public static Command Create()
    {
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var vocabSize = new Option<int>("--vocab-size") { Description = "Vocabulary size, including 256 byte tokens and 3 special tokens.", DefaultValueFactory = _ => 4096 };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var output = new Option<string>("--out") { Description = "Folder to write tokenizer.json, tokenizer_config.json and special_tokens_map.json to.", Required = true };
        var train = new Command("train", "Train a byte-level BPE tokenizer on the corpus's train split.") { corpus, vocabSize, languages, output };
        train.SetAction(parse =>
        {
            var writer = parse.InvocationConfiguration.Output;
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var model = PretrainingWorkflow.TrainTokenizer(opened, CorpusLanguages.Select(opened, parse.GetValue(languages)), parse.GetValue(vocabSize), writer.WriteLine);
            var target = parse.GetValue(output)!;
            model.Save(target);
            writer.WriteLine($"wrote a {model.VocabSize}-token tokenizer to {Path.GetFullPath(target)}");
            return 0;
        });
        return new Command("tokenizer", "Tokenizers.") { train };
    }
}
