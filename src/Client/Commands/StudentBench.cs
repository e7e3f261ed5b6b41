using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Babel.Modeling.Benchmarks;
using Babel.Modeling.Distillation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

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
            var stepCount = parse.GetValue(steps);
            foreach (var preset in parse.GetValue(students)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var options = new StudentOptions
                {
                    Setting = StudentSettings.MultiCot, Student = preset, Steps = stepCount, EvalInterval = stepCount, MaxRationaleTokens = 0, Threads = 2,
                };
                var (metrics, _) = StudentTrainer.Train(corpus, options, Path.Combine(root, "run-" + preset), cancellationToken: cancellationToken);
                // The same model trained as a plain causal LM on random tokens, batches of the student's mean tokens per step.
                var tokensPerStep = metrics.TrainTokens / (double)stepCount;
                var plain = PlainTrainingTokensPerSecond(Path.Combine(root, "run-" + preset), preset, (int)Math.Round(tokensPerStep / 64), stepCount, root);
                var gflops = 6.0 * metrics.Parameters * metrics.TrainTokensPerSecond / 1e9;
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{preset,-8} {metrics.Parameters,11:N0} {metrics.TrainTokensPerSecond,14:F0} {plain,12:F0} {metrics.TrainTokensPerSecond / plain,6:F2} {gflops,8:F2} {100 * gflops / peak,7:F1}%"));
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
                    await StudentGridCommand.RunAsync(connection, corpus, gridOptions, [StudentSettings.MultiCot], [StudentLabels.Gold], ["micro"],
                        [.. Enumerable.Range(1, runs).Select(s => (long)s)], TextWriter.Null, cancellationToken);
                }
                var seconds = stopwatch.Elapsed.TotalSeconds;
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"grid, {workers} worker(s), 1 thread per run: {runs} runs × {gridOptions.Steps} steps in {seconds:F1} s = {runs * 60 / seconds:F2} runs/min"));
            }
            return 0;
        });
        return command;
    }

    /// <summary>Tokens/s of next-token training (the same AdamW loop) of a freshly initialised copy of the student on random [64, length] batches.</summary>
    private static double PlainTrainingTokensPerSecond(string studentWork, string preset, int length, int steps, string root)
    {
        using var tokenizer = Modeling.Tokenization.HuggingFaceTokenizer.Load(Path.Combine(studentWork, StudentTrainer.TokenizerFolder));
        var config = ModelPresets.Create(preset, tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId);
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(1);
        length = Math.Max(2, length);
        var options = new PretrainingOptions { Steps = steps, BatchSize = 64, SequenceLength = length, CheckpointInterval = steps, Threads = 2 };
        var random = new Random(1);
        var batches = Enumerable.Range(0, steps).Select(_ =>
            Enumerable.Range(0, 64 * (length + 1)).Select(_ => (long)random.Next(3, tokenizer.VocabSize)).ToArray()).ToList();
        var stopwatch = new Stopwatch();
        Pretrainer.Train(model, step =>
        {
            if (step == 0) stopwatch.Start();
            var all = tensor(batches[step], [64, length + 1]);
            return Pretrainer.Loss(model.Forward(all[.., ..^1]), all[.., 1..].contiguous());
        }, options, Path.Combine(root, "plain-" + preset), new CheckpointHooks(), new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Step == steps) stopwatch.Stop();
        }));
        return 64.0 * length * steps / stopwatch.Elapsed.TotalSeconds;
    }
}
