using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Babel.Grains.Distillation;
using Babel.Modeling.Benchmarks;
using Babel.Modeling.Distillation;
using Babel.Modeling.Runtime;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel bench student</c>: student training tokens/s against plain causal-LM training of the same model on batches of
/// the same token count, GFLOP/s against the matmul peak, peak memory, and grid throughput with 1 vs 2 workers.
/// </summary>
internal static class StudentBench
{
    public static Command Create()
    {
        var steps = new Option<int>("--steps") { Description = "Training steps timed per student.", DefaultValueFactory = _ => 60 };
        var students = new Option<string>("--students") { Description = "Comma-separated presets to time.", DefaultValueFactory = _ => "micro,tiny" };
        var gridRuns = new Option<int>("--grid-runs") { Description = "Runs (seeds) of the 1-vs-2-worker grid comparison; 0 skips it.", DefaultValueFactory = _ => 4 };
        var gridSteps = new Option<int>("--grid-steps") { Description = "Steps per grid run.", DefaultValueFactory = _ => 60 };
        var work = new Option<string>("--work") { Description = "Scratch folder; deleted first.", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "babel-bench-student") };
        var command = new Command("student", "Student training tokens/s (multi-cot, 2 threads) against plain LM training of the same model, GFLOP/s against the matmul peak, memory, and grid runs/min with 1 vs 2 workers.")
        {
            steps, students, gridRuns, gridSteps, work,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var writer = parse.InvocationConfiguration.Output;
            var root = Path.GetFullPath(parse.GetValue(work)!);
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
            var data = Path.Combine(root, "arithmetic");
            ArithmeticWordProblems.Write(data, new ArithmeticProblemOptions());
            var corpus = StudentCorpus.Load(data);
            TorchRuntime.Initialize(2);
            var peak = ModelBenchmark.MatmulGflops(2048, 2, TimeSpan.FromSeconds(5));
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"matmul 2048³, 2 threads: {peak:F1} GFLOP/s"));
            writer.WriteLine($"{"student",-8} {"parameters",11} {"student tok/s",14} {"plain tok/s",12} {"ratio",6} {"GFLOP/s",8} {"of peak",8}");
            foreach (var preset in parse.GetValue(students)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var speed = DistillationBenchmarks.StudentTraining(corpus, preset, parse.GetValue(steps), root, cancellationToken);
                var m = speed.Metrics;
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{preset,-8} {m.Parameters,11:N0} {m.TrainTokensPerSecond,14:F0} {speed.PlainTokensPerSecond,12:F0} {m.TrainTokensPerSecond / speed.PlainTokensPerSecond,6:F2} {speed.Gflops,8:F2} {100 * speed.Gflops / peak,7:F1}%"));
            }
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peak resident memory: {ModelBenchmark.PeakResidentMegabytes():F0} MiB"));

            var runs = parse.GetValue(gridRuns);
            if (runs <= 0) return 0;
            var gridOptions = new StudentOptions
            {
                Setting = StudentSettings.MultiCot, Steps = parse.GetValue(gridSteps), EvalInterval = parse.GetValue(gridSteps), MaxRationaleTokens = 0, Threads = 1,
            };
            foreach (var workers in new[] { 1, 2 })
            {
                var stopwatch = Stopwatch.StartNew();
                await using (var connection = await EngineConnection.OpenAsync(cluster: false, Path.Combine(root, $"store-{workers}"), workers, cancellationToken))
                {
                    await StudentGridWorkflow.RunAsync(connection.Jobs, corpus, gridOptions, [StudentSettings.MultiCot], [StudentLabels.Gold], ["micro"],
                        [.. Enumerable.Range(1, runs).Select(s => (long)s)], progress: null, cancellationToken);
                }
                var seconds = stopwatch.Elapsed.TotalSeconds;
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"grid, {workers} worker(s), 1 thread per run: {runs} runs × {gridOptions.Steps} steps in {seconds:F1} s = {runs * 60 / seconds:F2} runs/min"));
            }
            return 0;
        });
        return command;
    }
}
