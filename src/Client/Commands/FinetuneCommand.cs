using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
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
        var dataParallel = new Option<int>("--data-parallel") { Description = "Ranks of a data-parallel job (one device worker each, gradients summed every step, or weights every --sync-every steps); 1 tunes in this process.", DefaultValueFactory = _ => 1 };
        var microBatches = new Option<int?>("--micro-batches") { Description = "Micro-batches each global batch is cut into (default: the ranks)." };
        var checkpointInterval = new Option<int>("--checkpoint-interval") { Description = "Steps between checkpoints (with --data-parallel: stored in the artifact store by rank 0).", DefaultValueFactory = _ => defaults.CheckpointInterval };
        var lease = new Option<double>("--lease-seconds") { Description = "With --data-parallel: a rank's lease; a step waits at most half of it for a silent rank.", DefaultValueFactory = _ => PretrainCommand.DefaultLeaseSeconds };
        var diloco = new DiLoCoOptions();
        var job = new JobCommandOptions { DefaultWorkers = parse => parse.GetValue(dataParallel) };
        var command = new Command("finetune", "Instruction-tune a copy of a model: loss on response tokens only, AdamW, resumable; keeps tokenizer.json and experts.json; in this process or data-parallel on the job engine.")
        {
            model, instructions, output, steps, seed, learningRate, batch, length, threads, dataParallel, microBatches, checkpointInterval, lease,
        };
        diloco.AddTo(command);
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
            var ranks = parse.GetValue(dataParallel);
            if (ranks < 1) throw new UserInputException($"--data-parallel must be at least 1 (got {ranks}).");
            options = diloco.Apply(parse, options, ranks);
            if (ranks > 1)
            {
                var leaseSeconds = parse.GetValue(lease);
                if (!(leaseSeconds >= 2)) throw new UserInputException($"--lease-seconds must be at least 2 (got {leaseSeconds}).");
                options.Validate();
                var directory = parse.GetValue(output)!;
                var modelDirectory = ModelOption.Folder(parse, model);
                if (Path.GetFullPath(modelDirectory).TrimEnd('/') == Path.GetFullPath(directory).TrimEnd('/'))
                {
                    throw new UserInputException("--out is the model folder itself; give another folder so the base model stays as it is.");
                }
                FinetuneJob? kind = null;
                return job.RunAsync(parse, kinds => kind = kinds.Get<FinetuneJob>(),
                    (jobs, ct) => FinetuneJob.UploadInputsAsync(jobs, modelDirectory, parse.GetValue(instructions)!, options, ranks, parse.GetValue(microBatches) ?? ranks,
                        TimeSpan.FromSeconds(leaseSeconds / 2), ct),
                    result =>
                    {
                        kind!.Save(result, directory);
                        parse.InvocationConfiguration.Output.WriteLine($"{result.Manifest.Summary()}; tuned model written to {Path.GetFullPath(directory)} ({ranks} data-parallel ranks)");
                        return 0;
                    }, cancellationToken, new JobOptions(LeaseDuration: TimeSpan.FromSeconds(leaseSeconds)));
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
