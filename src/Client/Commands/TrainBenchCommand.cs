using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Training;
using Babel.Storage;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel bench train</c>: data-parallel pretraining on 1, 2, … silo processes, synchronous or DiLoCo every H steps: step
/// time, exchange time per step, speed-up, and the final training and held-out losses; then the machine's own limit (the
/// same ranks training at once without exchanging: ideal speed-up and data-parallel efficiency), all also written as
/// JSON and markdown in the work folder.
/// </summary>
internal static class TrainBenchCommand
{
    public static Command Create()
    {
        var ranks = new Option<string>("--data-parallel") { Description = "Comma-separated rank counts to run (each rank its own silo process with one worker, one torch thread).", DefaultValueFactory = _ => "1,2" };
        var syncEvery = new Option<string>("--sync-every") { Description = "Comma-separated steps between synchronisations to run for every rank count above 1 (1: synchronous; H > 1: DiLoCo).", DefaultValueFactory = _ => "1" };
        var outer = new DiLoCoOptions();
        var preset = new Option<string>("--preset") { Description = "Model size.", DefaultValueFactory = _ => "small" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps per run.", DefaultValueFactory = _ => 30 };
        var batch = new Option<int>("--batch-size") { Description = "Rows of the global batch.", DefaultValueFactory = _ => 16 };
        var length = new Option<int>("--sequence-length") { Description = "Tokens per row.", DefaultValueFactory = _ => 128 };
        var work = new Option<string>("--work") { Description = "Scratch folder.", DefaultValueFactory = _ => Path.Combine(".babel", "bench-train") };
        var command = new Command("train", "The same data-parallel pretraining job on 1, 2, … ranks (one silo process, one worker, one torch thread each), synchronous or DiLoCo every H steps: step and exchange time, speed-up, final and held-out losses; every synchronous run ends with the same weights.")
        {
            ranks, syncEvery, outer.OuterLearningRate, outer.OuterMomentum, preset, steps, batch, length, work,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var counts = Counts(parse.GetValue(ranks)!, "--data-parallel", "rank counts ≥ 1, e.g. 1,2");
            var intervals = Counts(parse.GetValue(syncEvery)!, "--sync-every", "steps ≥ 1, e.g. 1,4,16");
            var root = Path.GetFullPath(parse.GetValue(work)!);
            var presetName = parse.GetValue(preset)!;
            var (tokenizer, corpus) = ClusterBenchmark.PrepareInputs(root, null, null, presetName);
            var options = new PretrainingOptions
            {
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), SequenceLength = parse.GetValue(length), Threads = 1, CheckpointInterval = 1_000_000,
                OuterLearningRate = parse.GetValue(outer.OuterLearningRate), OuterMomentum = parse.GetValue(outer.OuterMomentum),
            }.Validate();
            // The same micro-batches in every run: one rank accumulates what several compute apart, so every run's weights are the same bits.
            var microBatches = counts.Max();
            var runs = new List<TrainRun>();
            // Local steps need several replicas: one rank runs synchronously only.
            foreach (var (count, h) in counts.SelectMany(c => intervals.Where(h => h == 1 || c > 1).Select(h => (c, h))))
            {
                var run = await TrainBenchmark.RunAsync(count, microBatches, corpus, tokenizer, presetName, options with { SyncEvery = h }, root, cancellationToken);
                runs.Add(run);
                AnsiConsole.MarkupLineInterpolated($"[grey]{count} rank(s), sync every {h}: {run.Steps} steps in {run.WallSeconds:F1} s (job), {run.StepSeconds * 1000:F0} ms/step, forward + backward {run.ComputeSeconds * 1000:F0} ms, exchange {run.ExchangeSeconds * 1000:F1} ms/step[/]");
            }
            static string Number(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
            var table = new Table().AddColumns("ranks", "sync every", "job wall s", "step ms", "exchange ms/step", "exchange share", "MB per exchange", "tokens/s", "speed-up (step)",
                "final train loss", "held-out NLL", "weights");
            foreach (var r in runs)
            {
                table.AddRow(Number(r.Ranks, "F0"), Number(r.SyncEvery, "F0"), Number(r.WallSeconds, "F1"), Number(r.StepSeconds * 1000, "F0"), Number(r.ExchangeSeconds * 1000, "F1"),
                    Number(r.ExchangeSeconds / r.StepSeconds, "P1"), Number(r.GradientValues * 4 / 1e6, "F1"), Number(r.TokensPerSecond(options), "F0"),
                    Number(runs[0].StepSeconds / r.StepSeconds, "F2") + "×", Number(r.FinalTrainLoss, "F4"), Number(r.HeldoutNll, "F4"), r.ModelSha256[..12]);
            }
            AnsiConsole.Write(table);
            var limits = new List<MachineLimit>();
            // The machine's own limit: the same ranks training at once without exchanging, against the one-rank step.
            if (runs.FirstOrDefault(r => r.Ranks == 1 && r.SyncEvery == 1) is { } oneRank)
            {
                foreach (var synchronousRun in runs.Where(r => r.Ranks > 1 && r.SyncEvery == 1).ToList())
                {
                    var alone = await TrainBenchmark.RunAsync(synchronousRun.Ranks, microBatches, corpus, tokenizer, presetName, options with { SyncEvery = options.Steps }, root, cancellationToken);
                    limits.Add(MachineLimit.Of(oneRank, synchronousRun, alone));
                }
            }
            if (limits.Count > 0)
            {
                var limit = new Table().AddColumns("ranks", "step ms without exchange (ranks at once)", "ideal speed-up", "achieved speed-up", "data-parallel efficiency");
                foreach (var l in limits) limit.AddRow(Number(l.Ranks, "F0"), Number(l.ComputeOnlyStepSeconds * 1000, "F0"), Number(l.IdealSpeedUp, "F2") + "×", Number(l.AchievedSpeedUp, "F2") + "×", Number(l.Efficiency, "P1"));
                AnsiConsole.Write(limit);
            }
            var (json, markdown) = TrainBenchReport.Write(root, presetName, options, microBatches, runs, limits);
            AnsiConsole.MarkupLineInterpolated($"[grey]wrote {json} and {markdown}[/]");
            var synchronous = runs.Where(r => r.SyncEvery == 1).ToList();
            var identical = synchronous.All(r => r.ModelSha256 == synchronous[0].ModelSha256);
            AnsiConsole.MarkupLineInterpolated($"{options.Steps} steps of {options.BatchSize}×{options.SequenceLength}, '{presetName}', {microBatches} micro-batches per step; weights identical across synchronous runs: {identical}");
            return identical ? 0 : 1;
        });
        return command;
    }

    private static int[] Counts(string list, string option, string expected) =>
        [.. list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(c => int.TryParse(c, CultureInfo.InvariantCulture, out var n) && n >= 1 ? n : throw new UserInputException($"{option} takes {expected} (got '{c}')."))];
}
