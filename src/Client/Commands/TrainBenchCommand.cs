using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Training;
using Babel.Storage;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel bench train</c>: data-parallel pretraining on 1, 2, … silo processes: step time, exchange time per step, speed-up.</summary>
internal static class TrainBenchCommand
{
    public static Command Create()
    {
        var ranks = new Option<string>("--data-parallel") { Description = "Comma-separated rank counts to run (each rank its own silo process with one worker, one torch thread).", DefaultValueFactory = _ => "1,2" };
        var preset = new Option<string>("--preset") { Description = "Model size.", DefaultValueFactory = _ => "small" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps per run.", DefaultValueFactory = _ => 30 };
        var batch = new Option<int>("--batch-size") { Description = "Rows of the global batch.", DefaultValueFactory = _ => 16 };
        var length = new Option<int>("--sequence-length") { Description = "Tokens per row.", DefaultValueFactory = _ => 128 };
        var work = new Option<string>("--work") { Description = "Scratch folder.", DefaultValueFactory = _ => Path.Combine(".babel", "bench-train") };
        var command = new Command("train", "The same data-parallel pretraining job on 1, 2, … ranks (one silo process, one worker, one torch thread each): step and gradient-exchange time, speed-up; every run ends with the same weights.")
        {
            ranks, preset, steps, batch, length, work,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            int[] counts = [.. parse.GetValue(ranks)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(c => int.TryParse(c, CultureInfo.InvariantCulture, out var n) && n >= 1 ? n : throw new UserInputException($"--data-parallel takes rank counts ≥ 1, e.g. 1,2 (got '{c}')."))];
            var root = Path.GetFullPath(parse.GetValue(work)!);
            var presetName = parse.GetValue(preset)!;
            var (tokenizer, corpus) = ClusterBenchmark.PrepareInputs(root, null, null, presetName);
            var options = new PretrainingOptions
            {
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), SequenceLength = parse.GetValue(length), Threads = 1, CheckpointInterval = 1_000_000,
            }.Validate();
            // The same micro-batches in every run: one rank accumulates what several compute apart, so every run's weights are the same bits.
            var microBatches = counts.Max();
            var runs = new List<TrainRun>();
            foreach (var count in counts)
            {
                var run = await TrainBenchmark.RunAsync(count, microBatches, corpus, tokenizer, presetName, options, root, cancellationToken);
                runs.Add(run);
                AnsiConsole.MarkupLineInterpolated($"[grey]{count} rank(s): {run.Steps} steps in {run.WallSeconds:F1} s (job), {run.StepSeconds * 1000:F0} ms/step, exchange {run.ExchangeSeconds * 1000:F1} ms/step[/]");
            }
            var table = new Table().AddColumns("ranks", "job wall s", "step ms", "exchange ms/step", "exchange share", "gradient MB", "tokens/s", "speed-up (step)", "weights");
            foreach (var r in runs)
            {
                table.AddRow(r.Ranks.ToString(CultureInfo.InvariantCulture), r.WallSeconds.ToString("F1", CultureInfo.InvariantCulture), (r.StepSeconds * 1000).ToString("F0", CultureInfo.InvariantCulture),
                    (r.ExchangeSeconds * 1000).ToString("F1", CultureInfo.InvariantCulture), (r.ExchangeSeconds / r.StepSeconds).ToString("P1", CultureInfo.InvariantCulture),
                    (r.GradientValues * 4 / 1e6).ToString("F1", CultureInfo.InvariantCulture), r.TokensPerSecond(options).ToString("F0", CultureInfo.InvariantCulture),
                    (runs[0].StepSeconds / r.StepSeconds).ToString("F2", CultureInfo.InvariantCulture) + "×", r.ModelSha256[..12]);
            }
            AnsiConsole.Write(table);
            var identical = runs.All(r => r.ModelSha256 == runs[0].ModelSha256);
            AnsiConsole.MarkupLineInterpolated($"{options.Steps} steps of {options.BatchSize}×{options.SequenceLength}, '{presetName}', {microBatches} micro-batches per step; weights identical across runs: {identical}");
            return identical ? 0 : 1;
        });
        return command;
    }
}
