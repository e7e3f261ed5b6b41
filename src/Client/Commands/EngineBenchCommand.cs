using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Babel.Client.Jobs;
using Babel.Storage;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel bench engine</c>: the job engine alone at scale — completions per second, engine time per shard, state bytes per event.</summary>
internal static class EngineBenchCommand
{
    public static Command Create()
    {
        var shards = new Option<string>("--shards") { Description = "Comma-separated shard counts.", DefaultValueFactory = _ => "1000,10000,100000" };
        var workers = new Option<string>("--workers") { Description = "Comma-separated simulated worker counts (worker slots, split over the silos).", DefaultValueFactory = _ => "64" };
        var silos = new Option<string>("--silos") { Description = "Comma-separated silo counts.", DefaultValueFactory = _ => "1" };
        var storage = new Option<string>("--storage") { Description = "Comma-separated storages: local (embedded folders) and/or azurite (needs BABEL_STORAGE_CONNECTION_STRING).", DefaultValueFactory = _ => "local" };
        var sleep = new Option<int>("--shard-ms") { Description = "Compute time of each synthetic shard, in milliseconds.", DefaultValueFactory = _ => 0 };
        var work = new Option<string>("--work") { Description = "Scratch folder.", DefaultValueFactory = _ => Path.Combine(".babel", "bench-engine") };
        var format = FormatOption.Create("table", FormatOption.Json);
        var command = new Command("engine", "The job engine with shards that do nothing: completions/s, engine time per shard (mean, p99) and job-state bytes per shard event, over shard, worker and silo counts.")
        {
            shards, workers, silos, storage, sleep, work, format,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var storages = parse.GetValue(storage)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (storages.FirstOrDefault(s => s is not ("local" or "azurite")) is { } unknown) throw new UserInputException($"Unknown --storage '{unknown}'; use local or azurite.");
            var runs = new List<EngineRun>();
            var json = parse.GetValue(format) == FormatOption.Json;
            foreach (var store in storages)
                foreach (var siloCount in Counts(parse.GetValue(silos)!, "--silos"))
                    foreach (var workerCount in Counts(parse.GetValue(workers)!, "--workers"))
                        foreach (var shardCount in Counts(parse.GetValue(shards)!, "--shards"))
                        {
                            if (workerCount < siloCount) throw new UserInputException($"--workers {workerCount} is fewer than --silos {siloCount}; every silo needs a worker.");
                            var run = await EngineBenchmark.RunAsync(siloCount, workerCount, shardCount, store, parse.GetValue(sleep), Path.GetFullPath(parse.GetValue(work)!), cancellationToken);
                            runs.Add(run);
                            if (!json) Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{store} {siloCount} silo(s) × {workerCount} workers, {shardCount} shards: {run.CompletionsPerSecond:F0} completions/s"));
                        }
            if (json)
            {
                Console.WriteLine(JsonSerializer.Serialize(new { runs }, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            var table = new Table().AddColumns("storage", "silos", "workers", "shards", "wall s", "completions/s", "mean event ms", "p99 event ms", "state B/event", "peak RSS MiB");
            foreach (var r in runs)
            {
                table.AddRow(r.Storage, Number(r.Silos), Number(r.Workers), Number(r.Shards), r.WallSeconds.ToString("F1", CultureInfo.InvariantCulture),
                    r.CompletionsPerSecond.ToString("F0", CultureInfo.InvariantCulture), r.MeanEventMilliseconds.ToString("F2", CultureInfo.InvariantCulture),
                    r.P99EventMilliseconds.ToString("F2", CultureInfo.InvariantCulture), r.StateBytesPerEvent.ToString("F0", CultureInfo.InvariantCulture),
                    r.PeakResidentMebibytes.ToString("F0", CultureInfo.InvariantCulture));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static IEnumerable<int> Counts(string list, string option) =>
        list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(text =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0
                ? value
                : throw new UserInputException($"{option} takes positive whole numbers separated by commas (got '{text}')."));
}
