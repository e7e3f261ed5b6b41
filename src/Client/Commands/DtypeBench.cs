using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Benchmarks;
using Babel.Modeling.Checkpoints;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel bench dtype</c> (float32 against bfloat16 and float16 on this CPU) and <c>babel bench load</c> (peak memory of loading a sharded bf16 checkpoint).</summary>
internal static class DtypeBench
{
    public static IEnumerable<Command> Create() => [Speed(), Load()];

    private static Command Speed()
    {
        var seconds = new Option<double>("--seconds") { Description = "Time budget per matmul and forward measurement (at least one repetition).", DefaultValueFactory = _ => 3 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens decoded per measurement.", DefaultValueFactory = _ => 64 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds in which the types take turns; each keeps its best.", DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "Torch threads of the matmul and forward measurements (decoding uses one).", DefaultValueFactory = _ => 2 };
        var command = new Command("dtype", "Matmul GFLOP/s, d=512 forward tokens/s (batch 8×256) and stories110M-shaped batch-1 decoding tokens/s in float32, bfloat16 and float16.") { seconds, newTokens, rounds, threads };
        command.SetAction(parse =>
        {
            var budget = TimeSpan.FromSeconds(parse.GetValue(seconds));
            var results = DtypeBenchmark.Compare([ModelDtype.Float32, ModelDtype.BFloat16, ModelDtype.Float16], parse.GetValue(threads), budget,
                parse.GetValue(newTokens), parse.GetValue(rounds));
            var table = new Table().AddColumns("dtype", "matmul GFLOP/s", "forward tokens/s", "decode tokens/s", "forward vs float32", "decode vs float32");
            foreach (var r in results)
            {
                table.AddRow(r.Dtype, F(r.MatmulGflops, "F1"), F(r.ForwardTokensPerSecond, "F0"), F(r.DecodeTokensPerSecond, "F1"),
                    F(r.ForwardTokensPerSecond / results[0].ForwardTokensPerSecond, "F2") + "×", F(r.DecodeTokensPerSecond / results[0].DecodeTokensPerSecond, "F2") + "×");
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command Load()
    {
        var folder = new Option<string?>("--work") { Description = "Folder for the generated checkpoint (deleted after); default: a new temporary folder." };
        var dtype = new Option<string>("--dtype") { Description = "Element type to load it as: bfloat16 (kept as stored) or float32.", DefaultValueFactory = _ => "bfloat16" };
        dtype.AcceptOnlyFromAmong(["bfloat16", "float32", "float16"]);
        var command = new Command("load", "Writes a ~1 GB sharded bfloat16 checkpoint, loads it, and prints the peak resident memory against its weight bytes (run it in a fresh process).") { folder, dtype };
        command.SetAction(parse =>
        {
            var work = parse.GetValue(folder) is { } given ? Directory.CreateDirectory(Path.Combine(given, "bench-load-" + Guid.NewGuid().ToString("N"))).FullName
                : Directory.CreateTempSubdirectory("babel-bench-load-").FullName;
            try
            {
                var bytes = DtypeBenchmark.WriteRandomBf16Checkpoint(work, DtypeBenchmark.LoadConfig, shardBytes: 300_000_000);
                var shards = Directory.GetFiles(work, "*.safetensors").Length;
                var m = DtypeBenchmark.MeasureLoad(work, ModelDtypes.Parse(parse.GetValue(dtype)!), bytes);
                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{bytes / 1e6:F1} MB of bf16 weights in {shards} shards loaded as {m.Dtype} in {m.Seconds:F1} s: parameters {m.ParameterBytes / 1e6:F1} MB, resident before {m.ResidentBeforeMegabytes:F0} MiB, peak (VmHWM) {m.PeakMegabytes:F0} MiB = {m.PeakOverWeights:F3}× the weight bytes, {m.PeakOverParameters:F3}× the parameter bytes"));
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
            return 0;
        });
        return command;
    }

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
