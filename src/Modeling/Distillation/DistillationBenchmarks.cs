using System.Diagnostics;
using Babel.Modeling.Chat;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Distillation;

/// <summary>One student preset timed: its metrics (tokens/s of student training) and plain causal-LM training of the same model.</summary>
public sealed record StudentSpeed(string Preset, StudentMetrics Metrics, double PlainTokensPerSecond)
{
    /// <summary>Training GFLOP/s of the student run (6 · parameters · tokens/s).</summary>
    public double Gflops => 6.0 * Metrics.Parameters * Metrics.TrainTokensPerSecond / 1e9;
}

/// <summary>
/// The measurements behind <c>babel bench student</c> and <c>babel bench distill</c>: student training against plain
/// training of the same model on batches of the same token count, and a distillation job's generation batches run again
/// plainly (no engine, cache or files) on the same local teacher.
/// </summary>
public static class DistillationBenchmarks
{
    /// <summary>Trains <paramref name="preset"/> (multi-cot, 2 threads) for <paramref name="steps"/> steps in <paramref name="root"/>, then plain LM training of a fresh copy.</summary>
    public static StudentSpeed StudentTraining(StudentCorpus corpus, string preset, int steps, string root, CancellationToken cancellationToken)
    {
        var options = new StudentOptions { Setting = StudentSettings.MultiCot, Student = preset, Steps = steps, EvalInterval = steps, MaxRationaleTokens = 0, Threads = 2 };
        var work = Path.Combine(root, "run-" + preset);
        var (metrics, _) = StudentTrainer.Train(corpus, options, work, cancellationToken: cancellationToken);
        // The same model trained as a plain causal LM on random tokens, batches of the student's mean tokens per step.
        var length = (int)Math.Round(metrics.TrainTokens / (double)steps / 64);
        return new StudentSpeed(preset, metrics, PlainTrainingTokensPerSecond(work, preset, length, steps, root));
    }

    /// <summary>Tokens/s of next-token training (the same AdamW loop) of a freshly initialised copy of the student on random [64, length] batches.</summary>
    private static double PlainTrainingTokensPerSecond(string studentWork, string preset, int length, int steps, string root)
    {
        using var tokenizer = HuggingFaceTokenizer.Load(Path.Combine(studentWork, StudentTrainer.TokenizerFolder));
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

    /// <summary>
    /// Runs the generation batches of a written distillation folder again on <paramref name="modelDirectory"/>, one torch
    /// thread: per shard, the chain-of-thought calls then the evaluation calls, in chunks of <paramref name="batchSize"/>, as
    /// the job's shards ran them. Returns the calls, the completion tokens and the seconds.
    /// </summary>
    public static async Task<(long Calls, long Tokens, double Seconds)> PlainGenerationAsync(string modelDirectory, string folder, int batchSize, CancellationToken cancellationToken)
    {
        // OpenMP's thread count belongs to the calling thread: set it on the thread that generates, as the worker does.
        TorchRuntime.Initialize(1);
        using var model = CausalLanguageModel.Load(modelDirectory);
        using var tokenizer = HuggingFaceTokenizer.Load(modelDirectory);
        using var teacher = new LocalTeacher(model, tokenizer, PromptFormat.Load(modelDirectory, model.Config, tokenizer), "bench", batchSize);
        var chunks = new List<List<TeacherRequest>>();
        foreach (var exchanges in DistillationFolder.ReadRaw(folder))
        {
            foreach (var role in new[] { DistillationGenerator.CotRole, DistillationGenerator.EvaluationRole })
            {
                chunks.AddRange(exchanges.Where(e => e.Role == role).Select(e => e.Exchange.Request).Chunk(batchSize).Select(c => c.ToList()));
            }
        }
        long tokens = 0;
        var stopwatch = Stopwatch.StartNew();
        foreach (var chunk in chunks)
        {
            foreach (var result in await teacher.CompleteAsync(chunk, cancellationToken)) tokens += result.Completion!.CompletionTokens;
        }
        return (chunks.Sum(c => c.Count), tokens, stopwatch.Elapsed.TotalSeconds);
    }
}
