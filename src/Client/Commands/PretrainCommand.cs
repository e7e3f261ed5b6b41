using System.CommandLine;
using Babel.Grains.Training;
using Babel.Modeling.Training;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel pretrain</c>: trains a tokenizer (unless given) and a small multilingual Llama on a corpus; with
/// <c>--data-parallel N</c> (N &gt; 1) the training is a job whose N ranks run on N device workers and sum their gradients
/// every step, and the output folder is the same as a one-rank run's.
/// </summary>
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
        var checkpointInterval = new Option<int>("--checkpoint-interval") { Description = "Steps between checkpoints (with --data-parallel: stored in the artifact store by rank 0, what the ranks resume from after a loss).", DefaultValueFactory = _ => defaults.CheckpointInterval };
        var dataParallel = new DataParallelOptions("trains in this process");
        var job = dataParallel.JobOptions();
        var command = new Command("pretrain", "Pretrain a small multilingual Llama (AdamW, warmup + cosine, gradient clipping, resumable checkpoints), in this process or data-parallel on the job engine.")
        {
            corpus, output, preset, steps, seed, batch, length, learningRate, threads, tokenizer, languages, checkpointInterval,
        };
        dataParallel.AddTo(command);
        job.AddTo(command);
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
                CheckpointInterval = parse.GetValue(checkpointInterval),
            };
            var console = CommandConsole.For(parse.InvocationConfiguration.Output);
            var directory = parse.GetValue(output)!;
            options = dataParallel.Apply(parse, options);
            if (dataParallel.Read(parse) is { } run)
            {
                options.Validate();
                // The tokenizer is trained (or copied) here, as a one-rank run does; the ranks tokenise the corpus with it.
                PretrainingWorkflow.PrepareTokenizer(parse.GetValue(corpus)!, directory, parse.GetValue(preset)!, parse.GetValue(tokenizer), parse.GetValue(languages),
                    parse.InvocationConfiguration.Error.WriteLine);
                PretrainJob? kind = null;
                return job.RunAsync(parse, kinds => kind = kinds.Get<PretrainJob>(),
                    (jobs, ct) => PretrainJob.UploadInputsAsync(jobs, parse.GetValue(corpus)!, directory, parse.GetValue(preset)!, parse.GetValue(languages), options, run.Ranks,
                        run.MicroBatches, run.StepTimeout, ct),
                    result =>
                    {
                        kind!.Save(result, directory);
                        console.WriteLine($"{result.Manifest.Summary()}; model written to {Path.GetFullPath(directory)} ({run.Ranks} data-parallel ranks)");
                        return 0;
                    }, cancellationToken, run.JobOptions);
            }
            var manifest = TrainingProgressBar.Run(console, "pretraining", options.Steps, (progress, log) => PretrainingWorkflow.Pretrain(parse.GetValue(corpus)!, directory,
                parse.GetValue(preset)!, options, parse.GetValue(tokenizer), parse.GetValue(languages), progress, log, cancellationToken));
            console.WriteLine($"{manifest.Summary()}; model written to {Path.GetFullPath(directory)}");
            return Task.FromResult(0);
        });
        return command;
    }
}
