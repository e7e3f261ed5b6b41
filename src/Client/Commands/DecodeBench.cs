using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Benchmarks;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel bench decode</c>: Babel's batch-1 decoding against llama2.c's run.c on the same weights, and weight bytes streamed against memory bandwidth.</summary>
internal static class DecodeBench
{
    public static Command Create()
    {
        var runC = new Option<string?>("--run-c") { Description = "Path of llama2.c's run.c (from github.com/karpathy/llama2.c); compiled with gcc -O3 -fopenmp -march=native into a temporary folder. Without it only Babel is measured." };
        var threads = new Option<string>("--threads") { Description = "Thread counts, comma-separated (torch threads for Babel, OMP_NUM_THREADS for run.c).", DefaultValueFactory = _ => "2,1" };
        var steps = new Option<int>("--steps") { Description = "Positions decoded from BOS per measurement (at most the model's context).", DefaultValueFactory = _ => 256 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds in which Babel and run.c take turns; each keeps its best.", DefaultValueFactory = _ => 3 };
        var command = new Command("decode", "Batch-1 greedy decoding tokens/s of stories110M- and stories260K-shaped models in Babel and in llama2.c's run.c on the same weights, and GB/s of weights streamed against the memory bandwidth.")
        {
            runC, threads, steps, rounds,
        };
        command.SetAction(parse =>
        {
            var counts = ParseThreads(parse.GetValue(threads)!);
            if (counts is null)
            {
                Console.Error.WriteLine("--threads takes positive integers separated by commas, such as 2,1.");
                return 2;
            }
            var scratch = Directory.CreateTempSubdirectory("babel-bench-decode-").FullName;
            try
            {
                var report = DecodeBenchmark.Measure(parse.GetValue(runC), scratch, counts, parse.GetValue(steps), parse.GetValue(rounds));
                if (report.ReferenceProblem is { } problem) AnsiConsole.MarkupLineInterpolated($"[yellow]{problem}[/]");
                var cache = report.LastLevelCacheBytes is { } bytes ? $"{bytes / 1048576.0:F0} MiB" : "unknown";
                AnsiConsole.MarkupLineInterpolated($"last-level cache {cache}; bandwidth from summing {report.BandwidthArrayBytes / 1048576.0:F0} MiB of float32");
                var table = new Table().AddColumns("model", "threads", "weights MB", "Babel tok/s", "run.c tok/s", "Babel/run.c", "Babel GB/s", "memory GB/s", "of memory");
                foreach (var r in report.Rows)
                {
                    table.AddRow(r.Model, F(r.Threads, "F0"), F(r.WeightBytes / 1e6, "F1"), F(r.BabelTokensPerSecond, "F1"),
                        r.ReferenceTokensPerSecond is { } c ? F(c, "F1") : "-", r.ReferenceTokensPerSecond is { } d ? F(r.BabelTokensPerSecond / d, "F2") + "×" : "-",
                        F(r.BabelBytesPerSecond / 1e9, "F2"), F(r.BandwidthBytesPerSecond / 1e9, "F2"), F(r.BabelBytesPerSecond / r.BandwidthBytesPerSecond, "P0"));
                }
                AnsiConsole.Write(table);
                if (report.LastLevelCacheBytes is { } llc && report.Rows.Any(r => r.WeightBytes < 2 * llc))
                {
                    AnsiConsole.MarkupLine("A model whose weights are not much larger than the last-level cache partly decodes from cache: its GB/s can exceed the memory bandwidth.");
                }
                return 0;
            }
            finally
            {
                Directory.Delete(scratch, recursive: true);
            }
        });
        return command;
    }

    private static int[]? ParseThreads(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = parts.Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : 0).ToArray();
        return values.Length == 0 || values.Contains(0) ? null : values;
    }

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
