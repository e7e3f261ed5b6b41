using System.CommandLine;
using Babel.Modeling.Training;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel finetune</c>: instruction-tunes a copy of a model (all weights, from its checkpoint) with the loss on response
/// tokens only; the copy keeps the tokenizer and experts.json, so it can be profiled with the same partition.
/// </summary>
internal static class FinetuneCommand
{
    public static Command Create()
    {
        var defaults = InstructionTuning.DefaultOptions;
        var model = ModelOption.Create("Model folder to start from (Hugging Face layout with tokenizer.json).");
        var instructions = new Option<string>("--instructions") { Description = "JSONL file of {\"instruction\": ..., \"response\": ...} (see 'babel data instructions').", Required = true };
        var output = new Option<string>("--out") { Description = $"Folder for the tuned model (Hugging Face layout + {TrainingManifest.FileName}, {TrainingHistory.FileName}, {TrainingHistory.PlotFileName}); a rerun resumes from its checkpoint.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => defaults.Steps };
        var seed = new Option<long>("--seed") { Description = $"Seed of the batch order (recorded in {TrainingManifest.FileName}).", DefaultValueFactory = _ => defaults.Seed };
        var learningRate = new Option<double>("--learning-rate") { Description = "Peak AdamW learning rate (linear warmup, cosine decay).", DefaultValueFactory = _ => defaults.LearningRate };
        var batch = new Option<int>("--batch-size") { Description = "Instructions per step.", DefaultValueFactory = _ => defaults.BatchSize };
        var length = new Option<int>("--sequence-length") { Description = "Longest example in tokens (BOS + prompt + response); longer ones are left out.", DefaultValueFactory = _ => defaults.SequenceLength };
        var threads = new Option<int>("--threads") { Description = "Torch threads.", DefaultValueFactory = _ => defaults.Threads };
        var command = new Command("finetune", "Instruction-tune a copy of a model: loss on response tokens only, AdamW, resumable; keeps tokenizer.json and experts.json.")
        {
            model, instructions, output, steps, seed, learningRate, batch, length, threads,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var options = defaults with
            {
                Steps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
                LearningRate = parse.GetValue(learningRate),
                BatchSize = parse.GetValue(batch),
                SequenceLength = parse.GetValue(length),
                Threads = parse.GetValue(threads),
            };
            Tune(CommandConsole.For(parse.InvocationConfiguration.Output), ModelOption.Folder(parse, model), parse.GetValue(instructions)!, parse.GetValue(output)!, options, cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Instruction-tunes with a progress bar and prints the response loss before and after.</summary>
    private static void Tune(IAnsiConsole console, string model, string instructions, string output, PretrainingOptions options, CancellationToken cancellationToken)
    {
        var manifest = TrainingProgressBar.Run(console, "instruction tuning", options.Steps,
            (progress, log) => InstructionTuning.Tune(model, instructions, output, options, progress, log, cancellationToken));
        console.WriteLine($"{manifest.Summary()}; tuned model written to {Path.GetFullPath(output)}");
    }
}
