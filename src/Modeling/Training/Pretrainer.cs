using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Babel.Storage;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Training;

/// <summary>
/// Calls around a checkpoint: <see cref="Writing"/> (step, temporary folder) adds files that are renamed into place with
/// the checkpoint; <see cref="Written"/> (step) runs once the checkpoint is in place.
/// </summary>
public sealed record CheckpointHooks(Action<int, string>? Writing = null, Action<int>? Written = null);

/// <summary>Progress of a training run, reported after every step.</summary>
public readonly record struct TrainingProgress(int Step, int Steps, double Loss, double LearningRate, double TokensPerSecond, bool Resumed);

/// <summary>
/// Next-token pretraining with AdamW (decoupled weight decay on matrices only), linear warmup then cosine decay,
/// and gradient-norm clipping. Every <see cref="PretrainingOptions.CheckpointInterval"/> steps the weights,
/// optimizer moments and step are written atomically; a rerun with the same options resumes from there and
/// produces the same weights as an uninterrupted run.
/// </summary>
public static class Pretrainer
{
    private const string StateFileName = "trainer.json";
    private const string OptimizerFileName = "optimizer.bin";

    /// <summary>What the trainer remembers between checkpoints.</summary>
    public sealed record TrainerState(int Step, long Seed, int Steps, string OptionsFingerprint, List<double> Losses);

    /// <returns>The per-step training losses of the whole run (including steps before a resume).</returns>
    public static IReadOnlyList<double> Train(CausalLanguageModel model, TokenStream train, PretrainingOptions options, string checkpointDirectory,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default, string? historyDirectory = null) =>
        Train(model, step => Batch(train, options, step), options, checkpointDirectory, progress, cancellationToken, historyDirectory: historyDirectory);

    /// <summary>
    /// The same loop on any batches: <paramref name="batches"/> gives (inputs, targets) [batch, length] for a step as a pure
    /// function of it; targets equal to <see cref="IgnoreIndex"/> (prompts, padding) are left out of the mean loss and of
    /// the tokens/s. <paramref name="dataFingerprint"/> joins the options in the resume check, so a checkpoint of other data is refused.
    /// </summary>
    public static IReadOnlyList<double> Train(CausalLanguageModel model, Func<int, (Tensor Inputs, Tensor Targets)> batches, PretrainingOptions options,
        string checkpointDirectory, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default, string dataFingerprint = "",
        string? historyDirectory = null) =>
        Run(model, Backward(step =>
        {
            var (inputs, targets) = batches(step);
            return (Loss(model.Forward(inputs), targets), targets.ne(IgnoreIndex).sum().item<long>());
        }), options, checkpointDirectory, new CheckpointHooks(), progress, cancellationToken, dataFingerprint, historyDirectory, rank: null);

    /// <summary>
    /// One rank of a data-parallel run of the same loop: every rank draws the whole global batch of a step from
    /// <paramref name="batches"/> and computes its micro-batches of rows (<see cref="DataParallelRank.Blocks"/>), each
    /// micro-batch's summed loss divided by the global batch's target tokens, so the ranks' gradients add up to the gradient
    /// of the global mean loss (token-weighted where targets are ignored). The sum comes through <see cref="DataParallelRank.Exchange"/>; then every rank clips and
    /// steps identically, so every replica holds the same weights. Only the leader writes checkpoints (with their
    /// <paramref name="hooks"/>) and the history; every rank resumes from <paramref name="checkpointDirectory"/> when it
    /// holds one.
    /// </summary>
    public static IReadOnlyList<double> Train(CausalLanguageModel model, Func<int, (Tensor Inputs, Tensor Targets)> batches, PretrainingOptions options,
        string checkpointDirectory, DataParallelRank rank, CheckpointHooks hooks, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default, string dataFingerprint = "", string? historyDirectory = null)
    {
        rank.Validate();
        var local = options.SyncEvery > 1;
        return Run(model, step =>
        {
            var (inputs, targets) = batches(step);
            var globalTokens = Math.Max(1, targets.ne(IgnoreIndex).sum().item<long>());
            var (first, blocks) = rank.Blocks;
            var batchRows = (int)targets.shape[0];
            // DiLoCo's local steps follow the mean loss of this replica's own rows; the loss share reported is still the global batch's.
            var rankTokens = local ? Math.Max(1, RankRows(rank, batchRows).Sum(r => targets.narrow(0, r.Start, r.Count).ne(IgnoreIndex).sum().item<long>())) : globalTokens;
            double loss = 0;
            long tokens = 0;
            for (var block = first; block < first + blocks; block++)
            {
                var (row, rows) = rank.RowsOf(block, batchRows);
                if (rows == 0) continue;
                using var micro = NewDisposeScope();
                var microTargets = targets.narrow(0, row, rows);
                var logits = model.Forward(inputs.narrow(0, row, rows));
                var summed = F.cross_entropy(logits.view(-1, logits.shape[^1]), microTargets.reshape(-1), ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);
                var share = summed / globalTokens;
                if (local) (summed / rankTokens).backward();
                else share.backward();
                loss += share.item<float>();
                tokens += microTargets.ne(IgnoreIndex).sum().item<long>();
            }
            return (loss, tokens);
        }, options, checkpointDirectory, hooks, progress, cancellationToken, dataFingerprint, rank.IsLeader ? historyDirectory : null, rank);
    }

    /// <summary>
    /// One rank of a data-parallel run on any objective: <paramref name="gradients"/> runs this rank's forwards and backwards
    /// of its share of a step's objective (the ranks' shares add up to the objective of the global batch, e.g. summed losses
    /// divided by the global batch's target tokens) and returns its share of the loss and the target tokens it trained.
    /// The shares' gradients are summed through <see cref="DataParallelRank.Exchange"/> as in the language-model overload.
    /// With <see cref="PretrainingOptions.SyncEvery"/> &gt; 1 (DiLoCo) the replica follows its own rows' objective, so
    /// <paramref name="gradients"/> must normalise its backward by this rank's own target tokens, while the loss it
    /// returns stays its share of the global batch's.
    /// </summary>
    public static IReadOnlyList<double> TrainRank(CausalLanguageModel model, Func<int, (double Loss, long Tokens)> gradients, PretrainingOptions options,
        string checkpointDirectory, DataParallelRank rank, CheckpointHooks hooks, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default, string dataFingerprint = "", string? historyDirectory = null)
    {
        rank.Validate();
        return Run(model, gradients, options, checkpointDirectory, hooks, progress, cancellationToken, dataFingerprint, rank.IsLeader ? historyDirectory : null, rank);
    }

    /// <summary>
    /// The loop itself, on any scalar <paramref name="objective"/> of a step (computed from the model inside the step's
    /// dispose scope, as a pure function of the step); tokens/s counts batch × sequence length per step.
    /// <paramref name="hooks"/> let a caller add files to each checkpoint (written atomically with it) and act once it is written.
    /// </summary>
    public static IReadOnlyList<double> Train(CausalLanguageModel model, Func<int, Tensor> objective, PretrainingOptions options, string checkpointDirectory,
        CheckpointHooks hooks, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default, string dataFingerprint = "",
        string? historyDirectory = null) =>
        Run(model, Backward(step => (objective(step), (long)options.BatchSize * options.SequenceLength)), options, checkpointDirectory, hooks, progress,
            cancellationToken, dataFingerprint, historyDirectory, rank: null);

    /// <summary>The rows of every micro-batch <paramref name="rank"/> computes.</summary>
    private static IEnumerable<(int Start, int Count)> RankRows(DataParallelRank rank, int batchRows) =>
        Enumerable.Range(rank.Blocks.First, rank.Blocks.Count).Select(b => rank.RowsOf(b, batchRows)).Where(r => r.Count > 0);

    /// <summary>A step's gradients from an objective: its backward pass, and the loss as a number.</summary>
    private static Func<int, (double Loss, long Tokens)> Backward(Func<int, (Tensor Loss, long Tokens)> objective) => step =>
    {
        var (value, tokens) = objective(step);
        value.backward();
        return (value.item<float>(), tokens);
    };

    /// <summary>
    /// The loop on a step's gradients (<paramref name="gradients"/> runs forward and backward and returns the loss and how
    /// many target tokens the step trained). With <paramref name="historyDirectory"/>, every step is appended to its
    /// <see cref="TrainingHistory"/> (cut back to the checkpoint a run resumes from) and <c>loss.png</c> is drawn at the end.
    /// With a <paramref name="rank"/>, the gradients, loss and tokens are summed over the group before clipping, and only the
    /// leader writes checkpoints.
    /// </summary>
    private static IReadOnlyList<double> Run(CausalLanguageModel model, Func<int, (double Loss, long Tokens)> gradients, PretrainingOptions options,
        string checkpointDirectory, CheckpointHooks hooks, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken, string dataFingerprint,
        string? historyDirectory, DataParallelRank? rank)
    {
        options.Validate();
        if (options.SyncEvery > 1 && rank is null) throw new UserInputException("--sync-every needs --data-parallel: local steps between synchronisations are steps of several replicas.");
        var fingerprint = JsonSerializer.Serialize(options with { Threads = 0, CheckpointInterval = 0 }) + dataFingerprint;
        model.train();
        var parameters = model.named_parameters().ToList();
        var tensors = parameters.Select(p => p.parameter).ToList();
        var buckets = rank is not null && options.SyncEvery == 1 ? new GradientBuckets(parameters, rank.Exchange) : null;
        // A rank with one micro-batch per step (a full group) has one backward per step: its layers are exchanged as the
        // backward reaches them. A group of one exchanges nothing; a rank that accumulates sends everything after its last backward.
        var overlapped = buckets is not null && rank!.WorldSize > 1 && rank.Blocks.Count == 1;
        var decayed = parameters.Where(p => p.parameter.dim() >= 2 && p.name != "model.embed_tokens.weight").Select(p => p.parameter).ToList();
        var undecayed = parameters.Select(p => p.parameter).Except(decayed).ToList();
        using var optimizer = new HeldScalars.AdamW(
            [
                new AdamW.ParamGroup(decayed, new AdamW.Options { weight_decay = options.WeightDecay }),
                new AdamW.ParamGroup(undecayed, new AdamW.Options { weight_decay = 0 }),
            ],
            lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2, weightDecay: options.WeightDecay);

        var state = TryResume(model, optimizer, checkpointDirectory, fingerprint, rank?.Rank ?? 0) ?? new TrainerState(0, options.Seed, options.Steps, fingerprint, []);
        var resumed = state.Step > 0;
        // Built after the resume: θ_global is the checkpoint's weights (checkpoints are taken where the replicas agree).
        var diloco = rank is not null && options.SyncEvery > 1 ? new DiLoCoSynchronization(tensors, rank, options) : null;
        if (diloco is not null && resumed) diloco.LoadMomentum(checkpointDirectory);
        var history = historyDirectory is null ? null : TrainingHistory.Open(historyDirectory, state.Step);
        long tokens = 0;
        var stopwatch = Stopwatch.StartNew();
        var local = new List<(double Loss, long Tokens, double LearningRate)>();
        for (var step = state.Step; step < options.Steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var learningRate = options.LearningRateAt(step);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = learningRate;
            double loss;
            long trained;
            var stepStarted = Stopwatch.GetTimestamp();
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                buckets?.Begin(step);
                model.GradientReadiness = overlapped ? buckets : null;
                try
                {
                    (loss, trained) = gradients(step);
                }
                finally
                {
                    model.GradientReadiness = null;
                }
                DataParallelStepTiming? timing = null;
                if (rank is not null && buckets is not null) (loss, trained, timing) = SumOverRanks(rank, step, buckets, loss, trained, stepStarted, cancellationToken);
                nn.utils.clip_grad_norm_(tensors, options.GradientClip);
                optimizer.step();
                // A step's time includes the optimizer's, as a local step's does.
                if (timing is { } t) rank!.Timed?.Invoke(t with { StepSeconds = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds });
            }
            var done = step + 1;
            var checkpointing = options.IsCheckpointStep(done);
            if (diloco is not null)
            {
                // DiLoCo: the step's loss over the global batch is known at the next synchronisation, when the ranks' shares are summed.
                local.Add((loss, trained, learningRate));
                if (!options.IsSyncStep(done))
                {
                    var seconds = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
                    rank!.Timed?.Invoke(new DataParallelStepTiming(step, seconds, 0, seconds, trained, diloco.Values(0)));
                    continue;
                }
                var innerState = checkpointing ? OptimizerBytes(optimizer) : null;
                var computed = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
                float[] extra = [.. local.Select(l => (float)l.Loss), .. local.Select(l => (float)l.Tokens)];
                var (sums, innerStates) = diloco.Synchronize(step, extra, innerState, cancellationToken);
                var total = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
                rank!.Timed?.Invoke(new DataParallelStepTiming(step, computed, total - computed, total, trained, diloco.Values(extra.Length)));
                for (var i = 0; i < local.Count; i++) Record(done - local.Count + i, sums[i], (long)Math.Round(sums[local.Count + i]), local[i].LearningRate);
                local.Clear();
                if (checkpointing && rank.IsLeader)
                {
                    SaveCheckpoint(model, optimizer, checkpointDirectory, state with { Step = done }, temporary =>
                    {
                        hooks.Writing?.Invoke(done, temporary);
                        diloco.SaveMomentum(temporary);
                        for (var r = 1; r < innerStates!.Length; r++) File.WriteAllBytes(Path.Combine(temporary, RankOptimizerFileName(r)), innerStates[r]);
                    });
                    hooks.Written?.Invoke(done);
                }
                continue;
            }
            Record(step, loss, trained, learningRate);
            if (checkpointing && rank is not { IsLeader: false })
            {
                SaveCheckpoint(model, optimizer, checkpointDirectory, state with { Step = done }, temporary => hooks.Writing?.Invoke(done, temporary));
                hooks.Written?.Invoke(done);
            }
        }

        history?.SavePlot(string.Create(CultureInfo.InvariantCulture,
            $"{options.Steps} steps of {options.BatchSize} × {options.SequenceLength}, peak learning rate {options.LearningRate:G3}, seed {options.Seed}"));
        model.eval();
        return state.Losses;

        // A finished step: its loss (over the global batch) joins the state, the history and the progress.
        void Record(int step, double loss, long trained, double learningRate)
        {
            if (!double.IsFinite(loss))
            {
                throw new UserInputException($"Training diverged at step {step + 1} (loss {loss}); lower the learning rate.");
            }
            tokens += trained;
            state.Losses.Add(loss);
            var tokensPerSecond = tokens / stopwatch.Elapsed.TotalSeconds;
            history?.Append(new TrainingStep(step + 1, loss, learningRate, tokensPerSecond));
            progress?.Report(new TrainingProgress(step + 1, options.Steps, loss, learningRate, tokensPerSecond, resumed));
        }
    }

    /// <summary>
    /// Replaces the step's gradients by their sum over the ranks (the loss share and token count travel at the end of the
    /// same buffer; layers the backward pass already sent are only waited for) and returns the group's loss and tokens, and
    /// how long compute and the exposed exchange took on this rank. A group of one holds the sum already; its loss is
    /// rounded as the exchange's float32 rounds it.
    /// </summary>
    private static (double Loss, long Tokens, DataParallelStepTiming Timing) SumOverRanks(DataParallelRank rank, int step, GradientBuckets buckets, double loss, long tokens,
        long stepStarted, CancellationToken cancellationToken)
    {
        var computed = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
        if (rank.WorldSize == 1) return ((float)loss, tokens, new DataParallelStepTiming(step, computed, 0, computed, tokens, buckets.Values));
        var (sum, summedTokens, waited) = buckets.Finish(loss, tokens, cancellationToken);
        return (sum, summedTokens, new DataParallelStepTiming(step, computed, waited, Stopwatch.GetElapsedTime(stepStarted).TotalSeconds, tokens, buckets.Values));
    }

    /// <summary>The target id that no loss is computed for (PyTorch's convention).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Mean next-token cross-entropy over the targets that are not <see cref="IgnoreIndex"/>.</summary>
    public static Tensor Loss(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1), ignore_index: IgnoreIndex);

    /// <summary>Inputs and next-token targets [batch, length] for <paramref name="step"/>.</summary>
    public static (Tensor Inputs, Tensor Targets) Batch(TokenStream stream, PretrainingOptions options, int step)
    {
        var length = options.SequenceLength;
        var starts = stream.WindowStarts(options.Seed, step, options.BatchSize, length);
        var inputs = new long[options.BatchSize * length];
        var targets = new long[options.BatchSize * length];
        for (var row = 0; row < starts.Length; row++)
        {
            Array.Copy(stream.Tokens, starts[row], inputs, row * length, length);
            Array.Copy(stream.Tokens, starts[row] + 1, targets, row * length, length);
        }
        return (tensor(inputs, [options.BatchSize, length]), tensor(targets, [options.BatchSize, length]));
    }

    /// <summary>The inner AdamW state of DiLoCo rank <paramref name="rank"/> &gt; 0 in the leader's checkpoint (rank 0's is <c>optimizer.bin</c>).</summary>
    public static string RankOptimizerFileName(int rank) => $"optimizer-rank-{rank:D3}.bin";

    /// <summary>The optimizer's state as TorchSharp saves it.</summary>
    private static byte[] OptimizerBytes(AdamW optimizer)
    {
        var path = Path.Combine(Path.GetTempPath(), $"babel-optimizer-{Guid.NewGuid():N}.bin");
        try
        {
            optimizer.save_state_dict(path);
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static TrainerState? TryResume(CausalLanguageModel model, AdamW optimizer, string directory, string fingerprint, int rank)
    {
        var statePath = Path.Combine(directory, StateFileName);
        if (!File.Exists(statePath)) return null;
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath))
            ?? throw new UserInputException($"{statePath} is empty; delete {directory} to start training afresh.");
        if (state.OptionsFingerprint != fingerprint)
        {
            throw new UserInputException($"{directory} holds a checkpoint of a run with other options; delete it or rerun with the same options to resume.");
        }
        using var checkpoint = ModelCheckpoint.Load(directory);
        if (checkpoint.Config != model.Config)
        {
            throw new UserInputException($"{directory} holds a checkpoint of another model configuration; delete it to start afresh.");
        }
        model.LoadStateDict(checkpoint.Tensors, directory);
        // A DiLoCo rank resumes its own inner moments; a rank the checkpoint did not know (or any rank of a synchronous run) the leader's.
        var own = Path.Combine(directory, RankOptimizerFileName(rank));
        var optimizerPath = rank > 0 && File.Exists(own) ? own : Path.Combine(directory, OptimizerFileName);
        try
        {
            optimizer.load_state_dict(optimizerPath);
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or FormatException or OverflowException)
        {
            // E.g. a checkpoint written before q/k/v and gate/up were fused lists the optimizer moments of the unfused parameters.
            throw new UserInputException($"{optimizerPath} is not AdamW state for this model's parameters (damaged, or written by an earlier Babel); delete {directory} to start training afresh.", e);
        }
        return state;
    }

    private static void SaveCheckpoint(CausalLanguageModel model, AdamW optimizer, string directory, TrainerState state, Action<string> extra) =>
        AtomicFile.WriteDirectory(directory, temporary =>
        {
            extra(temporary);
            ModelCheckpoint.Save(temporary, model.Config, model.StateDict());
            optimizer.save_state_dict(Path.Combine(temporary, OptimizerFileName));
            File.WriteAllText(Path.Combine(temporary, StateFileName), JsonSerializer.Serialize(state));
        });
}
