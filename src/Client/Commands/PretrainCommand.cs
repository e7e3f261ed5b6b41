using System.CommandLine;
using Babel.Modeling.Training;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel pretrain</c>: trains a tokenizer (unless given) and a small multilingual Llama on a corpus.</summary>
internal static class PretrainCommand
{
    public static Command Create()
    {
        var defaults = new PretrainingOptions();
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder (corpus.json + LANG.jsonl).", Required = true };
        var output = new Option<string>("--out") { Description = $"Model folder to write (Hugging Face layout + {TrainingManifest.FileName}, {TrainingHistory.FileName}, {TrainingHistory.PlotFileName}); a rerun resumes from its checkpoint.", Required = true };
        var preset = new Option<string>("--config") { Description = $"Model size: {string.Join(", ", ModelPresets.Names)}.", DefaultValueFactory = _ => "tiny" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => defaults.Steps };
        var seed = new Option<long>("--seed") { Description = $"Seed of weights and data order (recorded in {TrainingManifest.FileName}).", DefaultValueFactory = _ => defaults.Seed };
        var batch = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => defaults.BatchSize };
        var length = new Option<int>("--sequence-length") { Description = "Tokens per sequence.", DefaultValueFactory = _ => defaults.SequenceLength };
        var learningRate = new Option<double>("--learning-rate") { Description = "Peak AdamW learning rate (linear warmup, cosine decay).", DefaultValueFactory = _ => defaults.LearningRate };
        var threads = new Option<int>("--threads") { Description = "Torch threads.", DefaultValueFactory = _ => defaults.Threads };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Folder holding a tokenizer.json to use instead of training one." };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var command = new Command("pretrain", "Pretrain a small multilingual Llama (AdamW, warmup + cosine, gradient clipping, resumable checkpoints).")
        {
            corpus, output, preset, steps, seed, batch, length, learningRate, threads, tokenizer, languages,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var options = defaults with
            {
                Steps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
                BatchSize = parse.GetValue(batch),
                SequenceLength = parse.GetValue(length),
                LearningRate = parse.GetValue(learningRate),
                Threads = parse.GetValue(threads),
            };
            var console = CommandConsole.For(parse.InvocationConfiguration.Output);
            var directory = parse.GetValue(output)!;
            var manifest = TrainingProgressBar.Run(console, "pretraining", options.Steps, (progress, log) => PretrainingWorkflow.Pretrain(parse.GetValue(corpus)!, directory,
                parse.GetValue(preset)!, options, parse.GetValue(tokenizer), parse.GetValue(languages), progress, log, cancellationToken));
            console.WriteLine($"{manifest.Summary()}; model written to {Path.GetFullPath(directory)}");
            return Task.FromResult(0);
        });
        return command;
    }
}
