using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// One rank of <c>babel pretrain --data-parallel N</c>: the model folder being trained is <c>workDirectory</c> (tokenizer
/// files, the resumable <c>checkpoint/</c> and, on the leader, <c>history.jsonl</c>), exactly as a one-rank run's output
/// folder; the leader completes it with <see cref="PretrainingWorkflow.Finish"/> when training ends.
/// </summary>
public static class DataParallelPretraining
{
    /// <summary>
    /// Trains (or resumes, when <paramref name="workDirectory"/> holds a checkpoint) this rank's replica to the end and
    /// returns it with the run's losses; throws <see cref="GroupChangedException"/> when the group changes under it.
    /// </summary>
    public static (CausalLanguageModel Model, IReadOnlyList<double> Losses) TrainRank(PretrainingRun run, PretrainingOptions options, string workDirectory,
        DataParallelRank rank, CheckpointHooks hooks, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        TorchRuntime.Initialize(options.Threads);
        var model = run.NewModel(options.Seed);
        try
        {
            var checkpoint = Path.Combine(workDirectory, TrainingManifest.CheckpointFolderName);
            var losses = Pretrainer.Train(model, step => Pretrainer.Batch(run.Train, options, step), options, checkpoint, rank, hooks, progress,
                cancellationToken, historyDirectory: workDirectory);
            return (model, losses);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>
/// One rank of <c>babel finetune --data-parallel N</c>: the tuned model folder is <c>workDirectory</c> (the resumable
/// <c>checkpoint/</c> and, on the leader, <c>history.jsonl</c>); the leader completes it with <see cref="InstructionTuning.Finish"/>.
/// </summary>
public static class DataParallelInstructionTuning
{
    /// <summary>
    /// Trains (or resumes) this rank's replica of the base model to the end; returns it, the losses and the response loss
    /// of the base model (measured on the leader only; NaN elsewhere). Throws <see cref="GroupChangedException"/> when the group changes.
    /// </summary>
    public static (CausalLanguageModel Model, IReadOnlyList<double> Losses, double Before) TrainRank(InstructionTuningRun run, PretrainingOptions options, string workDirectory,
        string dataFingerprint, DataParallelRank rank, CheckpointHooks hooks, CancellationToken cancellationToken = default)
    {
        TorchRuntime.Initialize(options.Threads);
        var model = run.NewModel(options.Seed);
        try
        {
            var before = rank.IsLeader ? InstructionTuning.ResponseLoss(model, run.Evaluation, run.Tokenizer.PadId) : double.NaN;
            var examples = run.Fitting;
            var checkpoint = Path.Combine(workDirectory, TrainingManifest.CheckpointFolderName);
            var losses = Pretrainer.Train(model,
                step => InstructionTuning.Batch([.. InstructionTuning.BatchIndices(examples.Count, options.Seed, step, options.BatchSize).Select(i => examples[i])], run.Tokenizer.PadId),
                options, checkpoint, rank, hooks, progress: null, cancellationToken, dataFingerprint, historyDirectory: workDirectory);
            return (model, losses, before);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
