using System.CommandLine;
using Babel.Grains.Training;
using Babel.Modeling.Training;
using Babel.Storage;
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
        var checkpointInterval = new Option<int>("--checkpoint-interval") { Description = "Steps between checkpoints (with --data-parallel: stored in the artifact store by rank 0).", DefaultValueFactory = _ => defaults.CheckpointInterval };
        var dataParallel = new DataParallelOptions("tunes in this process");
        var job = dataParallel.JobOptions();
        var command = new Command("finetune", "Instruction-tune a copy of a model: loss on response tokens only, AdamW, resumable; keeps tokenizer.json and experts.json; in this process or data-parallel on the job engine.")
        {
            model, instructions, output, steps, seed, learningRate, batch, length, threads, checkpointInterval,
        };
        dataParallel.AddTo(command);
        job.AddTo(command);
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
                CheckpointInterval = parse.GetValue(checkpointInterval),
            };
            options = dataParallel.Apply(parse, options);
            if (dataParallel.Read(parse) is { } run)
            {
                options.Validate();
                var directory = parse.GetValue(output)!;
                var modelDirectory = ModelOption.Folder(parse, model);
                if (Path.GetFullPath(modelDirectory).TrimEnd('/') == Path.GetFullPath(directory).TrimEnd('/'))
                {
                    throw new UserInputException("--out is the model folder itself; give another folder so the base model stays as it is.");
                }
                FinetuneJob? kind = null;
                return job.RunAsync(parse, kinds => kind = kinds.Get<FinetuneJob>(),
                    (jobs, ct) => FinetuneJob.UploadInputsAsync(jobs, modelDirectory, parse.GetValue(instructions)!, options, run.Ranks, run.MicroBatches,
                        run.StepTimeout, ct),
                    result =>
                    {
                        kind!.Save(result, directory);
                        parse.InvocationConfiguration.Output.WriteLine($"{result.Manifest.Summary()}; tuned model written to {Path.GetFullPath(directory)} ({run.Ranks} data-parallel ranks)");
                        return 0;
                    }, cancellationToken, run.JobOptions);
            }
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
