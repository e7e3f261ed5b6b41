using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Distillation;

/// <summary>Progress of a student run: the stage (1 = self-evaluation, 2 = distillation), its step, and the validation accuracy on evaluation steps.</summary>
public readonly record struct StudentProgress(int Stage, int Step, int Steps, double Loss, double? ValidationAccuracy);

/// <summary>Validation accuracy of the <c>predict:</c> output at a step of the distillation stage.</summary>
public sealed record StudentEvaluation([property: JsonPropertyName("step")] int Step, [property: JsonPropertyName("accuracy")] double Accuracy);

/// <summary>One test question's prediction: what the student wrote after <c>predict:</c>, its parsed answer and whether it is right.</summary>
public sealed record StudentPrediction(
    [property: JsonPropertyName("id")] string Id, [property: JsonPropertyName("gold")] string Gold,
    [property: JsonPropertyName("output")] string Output, [property: JsonPropertyName("answer")] string? Answer, [property: JsonPropertyName("correct")] bool Correct);

/// <summary><c>metrics.json</c> of a student run: the checkpoint chosen on validation accuracy, scored once on test.</summary>
public sealed record StudentMetrics(
    [property: JsonPropertyName("options")] StudentOptions Options,
    [property: JsonPropertyName("student_source")] string StudentSource,
    [property: JsonPropertyName("parameters")] long Parameters,
    [property: JsonPropertyName("distillation_examples")] int DistillationExamples,
    [property: JsonPropertyName("self_evaluation_examples")] int SelfEvaluationExamples,
    [property: JsonPropertyName("examples_too_long")] int ExamplesTooLong,
    [property: JsonPropertyName("questions_without_label")] int QuestionsWithoutLabel,
    [property: JsonPropertyName("questions_without_rationale")] int QuestionsWithoutRationale,
    [property: JsonPropertyName("train_questions")] int TrainQuestions,
    [property: JsonPropertyName("validation_questions")] int ValidationQuestions,
    [property: JsonPropertyName("test_questions")] int TestQuestions,
    [property: JsonPropertyName("best_step")] int BestStep,
    [property: JsonPropertyName("validation_accuracy")] double ValidationAccuracy,
    [property: JsonPropertyName("test_accuracy")] double TestAccuracy,
    [property: JsonPropertyName("test_rationale_accuracy")] double? TestRationaleAccuracy,
    [property: JsonPropertyName("evaluations")] IReadOnlyList<StudentEvaluation> Evaluations,
    [property: JsonPropertyName("train_tokens")] long TrainTokens,
    [property: JsonPropertyName("train_tokens_per_second")] double TrainTokensPerSecond,
    [property: JsonPropertyName("corpus")] string Corpus);

/// <summary>
/// Trains one student ("Mind's Mirror", student side) with Babel's decoder-only model: task prefixes <c>predict:</c>
/// (question → answer) and <c>explain:</c> (question → rationale); loss L = α·L_label + (1 − α)·L_rationale in the
/// distillation stage, preceded in the <c>-se</c> settings by a self-evaluation stage whose final weights it continues
/// from: by default (the paper's) the same loss on the evaluation's verdict as label and its analysis as rationale, or
/// the whole evaluation after <c>evaluate:</c> (<see cref="StudentSelfEvaluationForms"/>, <see cref="StudentExamples.Build"/>);
/// the stages' steps follow <see cref="StudentOptions.Budget"/>. The data order of each stage is a function of
/// (seed, step) and every stage checkpoints weights, optimizer moments and step atomically, so a killed run resumes
/// exactly. The checkpoint with the best validation accuracy (validation carved from train) is scored on test.
/// </summary>
public static class StudentTrainer
{
    public const string MetricsFile = "metrics.json";
    /// <summary>The folders of <see cref="TrainToFolder"/>'s output: the resumable run, and the chosen student.</summary>
    public const string CheckpointFolder = "checkpoint";
    public const string ModelFolder = "model";
    public const string PredictionsFile = "predictions.jsonl";
    public const string TokenizerFolder = "tokenizer";
    public const string SelfEvaluationFolder = "stage1-self-evaluation";
    public const string DistillationFolder = "stage2-distillation";
    public const string BestFolder = "best";
    private const string EvaluationsFile = "evaluations.json";
    private const int EvaluationBatch = 64;
    private static readonly KeyValuePair<string, object?> SelfEvaluationStage = new("stage", "self-evaluation");
    private static readonly KeyValuePair<string, object?> DistillationStage = new("stage", "distillation");

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true };

    /// <summary>
    /// One student run as <c>babel distill train</c> makes it: trained (or resumed) in <c>OUT/checkpoint</c>, with the
    /// per-step <c>history.jsonl</c> and <c>loss.png</c> in <paramref name="outDirectory"/>, then <c>metrics.json</c>,
    /// <c>predictions.jsonl</c> and <c>model/</c> (the chosen student) written there.
    /// </summary>
    public static StudentMetrics TrainToFolder(StudentCorpus corpus, StudentOptions options, string outDirectory, IProgress<StudentProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var directory = Path.GetFullPath(outDirectory);
        var work = Path.Combine(directory, CheckpointFolder);
        var (metrics, predictions) = Train(corpus, options, work, progress, cancellationToken: cancellationToken, historyDirectory: directory);
        WriteOutputs(directory, work, metrics, predictions, ModelFolder);
        return metrics;
    }

    /// <summary>
    /// Runs (or resumes) a student in <paramref name="workDirectory"/> and returns its metrics and test predictions.
    /// <paramref name="checkpointWritten"/> is called after each checkpoint (a grid shard copies the folder to the artifact store).
    /// With <paramref name="historyDirectory"/>, every step goes to its <see cref="TrainingHistory"/> (steps counted across
    /// both stages, validation accuracy on the evaluated steps), cut back to the checkpoint a resumed run starts from.
    /// </summary>
    public static (StudentMetrics Metrics, IReadOnlyList<StudentPrediction> Predictions) Train(StudentCorpus corpus, StudentOptions options, string workDirectory,
        IProgress<StudentProgress>? progress = null, Action? checkpointWritten = null, CancellationToken cancellationToken = default, string? historyDirectory = null) =>
        Run(corpus, options, workDirectory, progress, checkpointWritten is null ? null : _ => checkpointWritten(), rank: null, cancellationToken, historyDirectory)!.Value;

    /// <summary>
    /// One rank of <c>babel distill train --data-parallel N</c>: the same run on this rank's micro-batches of every global
    /// batch (<see cref="ObjectiveShare"/>), the gradients summed over the group every step. Only the leader evaluates on
    /// validation, writes checkpoints (telling <paramref name="checkpointWritten"/> the step counted across both stages)
    /// and scores the chosen student on test; the other ranks return null.
    /// </summary>
    public static (StudentMetrics Metrics, IReadOnlyList<StudentPrediction> Predictions)? TrainRank(StudentCorpus corpus, StudentOptions options, string workDirectory,
        DataParallelRank rank, Action<int> checkpointWritten, CancellationToken cancellationToken = default, string? historyDirectory = null) =>
        Run(corpus, options, workDirectory, progress: null, checkpointWritten, rank, cancellationToken, historyDirectory);

    private static (StudentMetrics Metrics, IReadOnlyList<StudentPrediction> Predictions)? Run(StudentCorpus corpus, StudentOptions options, string workDirectory,
        IProgress<StudentProgress>? progress, Action<int>? checkpointWritten, DataParallelRank? rank, CancellationToken cancellationToken, string? historyDirectory)
    {
        options = options.Validate();
        TorchRuntime.Initialize(options.Threads);
        var task = corpus.TaskKind;
        var work = Path.GetFullPath(workDirectory);
        Directory.CreateDirectory(work);
        var (train, validation) = corpus.Split(options.ValidationFraction);
        var examples = StudentExamples.Build(train, options.Setting, options.Labels, options.Rationales, options.SelfEvaluationForm, options.Cots);
        using var tokenizer = LoadTokenizer(options, corpus, work);
        var (model, source) = CreateStudent(options, tokenizer);
        using var disposeModel = model;
        var padId = tokenizer.PadId;
        var tooLong = 0;
        // Label and rationale rows of an example stay together: an example goes when its label row is too long, its rationale alone when that is.
        List<(TokenizedInstruction Label, TokenizedInstruction? Rationale)> Fit(IEnumerable<(InstructionExample Label, InstructionExample? Rationale)> rows)
        {
            var kept = new List<(TokenizedInstruction Label, TokenizedInstruction? Rationale)>();
            foreach (var (labelRow, rationaleRow) in rows)
            {
                var label = InstructionTuning.Tokenize(tokenizer, labelRow);
                var rationale = rationaleRow is null ? null : InstructionTuning.Tokenize(tokenizer, rationaleRow);
                if (label.Tokens.Length - 1 > options.SequenceLength) { tooLong++; continue; }
                if (rationale is not null && rationale.Tokens.Length - 1 > options.SequenceLength) { tooLong++; rationale = null; }
                kept.Add((label, rationale));
            }
            return kept;
        }
        var distillation = Fit(examples.Distillation.Select(e => (new InstructionExample(StudentPrompts.Predict(e.Question), e.Label),
            e.Rationale is null ? null : new InstructionExample(StudentPrompts.Explain(e.Question), e.Rationale))));
        var selfEvaluation = Fit(examples.SelfEvaluation.Select(e => (e.Label, e.Rationale)));
        if (distillation.Count == 0) throw new UserInputException($"Every example is longer than --sequence-length {options.SequenceLength}; raise it.");
        if (StudentSettings.UsesSelfEvaluation(options.Setting) && selfEvaluation.Count == 0)
        {
            throw new UserInputException($"Every self-evaluation example is longer than --sequence-length {options.SequenceLength}; raise it.");
        }

        // Every option that shapes the run (the student by its content, not its path), so a checkpoint of another run is refused.
        var corpusFingerprint = corpus.Fingerprint();
        var fingerprint = $"|{JsonSerializer.Serialize(options with { Threads = 0, Student = source })}|{corpusFingerprint}";
        // Tokens (inputs, padding excluded) of the whole run, a function of the data order; and of the steps this process trained, for the speed.
        long trainedTokens = 0, trainedHere = 0;
        var trainingTime = Stopwatch.StartNew();
        var history = historyDirectory is null ? null
            : new StudentHistory(historyDirectory, options.SelfEvaluationStageSteps, options.EvalInterval, options.DistillationStageSteps,
                () => trainingTime.Elapsed.TotalSeconds > 0 ? trainedHere / trainingTime.Elapsed.TotalSeconds : 0);
        if (rank is { IsLeader: false }) history = null;
        // The stages' steps counted one after the other: the steps a data-parallel job's checkpoints are named by.
        var stageOneSteps = options.SelfEvaluationStageSteps;
        if (StudentSettings.UsesSelfEvaluation(options.Setting))
        {
            var order = new EpochOrder(selfEvaluation.Count, options.Seed);
            for (var step = 0; step < options.SelfEvaluationStageSteps; step++) trainedTokens += order.Batch(step, options.BatchSize).Sum(i => Tokens(selfEvaluation[i]));
            List<(TokenizedInstruction Label, TokenizedInstruction? Rationale)> Rows(int step)
            {
                var batch = order.Batch(step, options.BatchSize).Select(i => selfEvaluation[i]).ToList();
                var tokens = batch.Sum(Tokens);
                trainedHere += tokens;
                DistillationMetrics.StudentTokens.Add(tokens, SelfEvaluationStage);
                return batch;
            }
            var stageOneHooks = new CheckpointHooks(Written: s => checkpointWritten?.Invoke(s));
            var stageOne = Path.Combine(work, SelfEvaluationFolder);
            if (rank is null)
            {
                Pretrainer.Train(model, step =>
                    {
                        var batch = Rows(step);
                        return Objective(model, [.. batch.Select(b => b.Label)], [.. batch.Where(b => b.Rationale is not null).Select(b => b.Rationale!)], options.SelfEvaluationAlpha, padId);
                    }, options.Stage(options.SelfEvaluationStageSteps), stageOne, stageOneHooks, Progress(progress, 1, _ => { }, history), cancellationToken, fingerprint + "|self-evaluation");
            }
            else
            {
                Pretrainer.TrainRank(model, step => ObjectiveShare(model, Rows(step), options.SelfEvaluationAlpha, padId, rank, local: options.SyncEvery > 1),
                    options.Stage(options.SelfEvaluationStageSteps), stageOne, rank, stageOneHooks, Progress(progress, 1, _ => { }, history), cancellationToken, fingerprint + "|self-evaluation");
            }
        }

        var stage = Path.Combine(work, DistillationFolder);
        var (evaluations, best) = ResumeBest(stage);
        var distillationOrder = new EpochOrder(distillation.Count, options.Seed);
        for (var step = 0; step < options.DistillationStageSteps; step++) trainedTokens += distillationOrder.Batch(step, options.BatchSize).Sum(i => Tokens(distillation[i]));
        var lastLoss = double.NaN;
        var alpha = StudentSettings.UsesRationales(options.Setting) ? options.Alpha : 1.0;
        List<(TokenizedInstruction Label, TokenizedInstruction? Rationale)> Batch(int step)
        {
            var batch = distillationOrder.Batch(step, options.BatchSize).Select(i => distillation[i]).ToList();
            var tokens = batch.Sum(Tokens);
            trainedHere += tokens;
            DistillationMetrics.StudentTokens.Add(tokens, DistillationStage);
            return batch;
        }
        var hooks = new CheckpointHooks(
            Writing: (step, temporary) =>
            {
                // Evaluation time is not training time.
                trainingTime.Stop();
                var accuracy = Accuracy(model, tokenizer, task, validation, options.MaxAnswerTokens).Accuracy;
                model.train();
                progress?.Report(new StudentProgress(2, step, options.DistillationStageSteps, lastLoss, accuracy));
                history?.Validation(step, accuracy);
                evaluations.RemoveAll(e => e.Step >= step);
                evaluations.Add(new StudentEvaluation(step, accuracy));
                // Ties keep the earlier checkpoint.
                if (best.Step == 0 || accuracy > best.Accuracy) best = (step, accuracy);
                if (best.Step == step) ModelCheckpoint.Save(Path.Combine(temporary, BestFolder), model.Config, model.StateDict());
                else CopyFolder(Path.Combine(stage, BestFolder), Path.Combine(temporary, BestFolder));
                File.WriteAllText(Path.Combine(temporary, EvaluationsFile), JsonSerializer.Serialize(evaluations));
                trainingTime.Start();
            },
            Written: s => checkpointWritten?.Invoke(stageOneSteps + s));
        var stageTwoProgress = Progress(progress, 2, loss => lastLoss = loss, history);
        if (rank is null)
        {
            Pretrainer.Train(model, step =>
                {
                    var batch = Batch(step);
                    return Objective(model, [.. batch.Select(b => b.Label)], [.. batch.Where(b => b.Rationale is not null).Select(b => b.Rationale!)], alpha, padId);
                }, options.Stage(options.DistillationStageSteps), stage, hooks, stageTwoProgress, cancellationToken, fingerprint + "|distillation");
        }
        else
        {
            Pretrainer.TrainRank(model, step => ObjectiveShare(model, Batch(step), alpha, padId, rank, local: options.SyncEvery > 1), options.Stage(options.DistillationStageSteps), stage, rank, hooks, stageTwoProgress,
                cancellationToken, fingerprint + "|distillation");
        }
        trainingTime.Stop();
        history?.SavePlot();
        // Every rank holds the same weights; only the leader checkpointed the best of them and scores it.
        if (rank is { IsLeader: false }) return null;

        using (var chosen = ModelCheckpoint.Load(Path.Combine(stage, BestFolder))) model.LoadStateDict(chosen.Tensors, Path.Combine(stage, BestFolder));
        model.eval();
        var (testAccuracy, predictions) = Accuracy(model, tokenizer, task, corpus.Test, options.MaxAnswerTokens);
        double? rationaleAccuracy = StudentSettings.UsesRationales(options.Setting) && options.MaxRationaleTokens > 0
            ? RationaleAccuracy(model, tokenizer, task, corpus.Test, options.MaxRationaleTokens)
            : null;
        var metrics = new StudentMetrics(options, source, model.parameters().Sum(p => p.numel()),
            distillation.Count, selfEvaluation.Count, tooLong, examples.QuestionsWithoutLabel, examples.QuestionsWithoutRationale,
            train.Count, validation.Count, corpus.Test.Count, best.Step, best.Accuracy, testAccuracy, rationaleAccuracy, evaluations,
            trainedTokens, trainingTime.Elapsed.TotalSeconds > 0 && trainedHere > 0 ? trainedHere / trainingTime.Elapsed.TotalSeconds : 0, corpusFingerprint);
        return (metrics, predictions);
    }

    /// <summary>Input tokens (padding excluded) of an example's label and rationale rows.</summary>
    private static long Tokens((TokenizedInstruction Label, TokenizedInstruction? Rationale) example) =>
        example.Label.Tokens.Length - 1L + (example.Rationale?.Tokens.Length - 1L ?? 0);

    /// <summary>
    /// α·(mean cross-entropy over the answer tokens of <paramref name="labels"/>) + (1 − α)·(mean over the rationale tokens
    /// of <paramref name="rationales"/>); a term without rows counts zero. Each task is its own padded batch, so a short
    /// answer does not pay for a long rationale's padding.
    /// </summary>
    public static Tensor Objective(CausalLanguageModel model, IReadOnlyList<TokenizedInstruction> labels, IReadOnlyList<TokenizedInstruction> rationales, double alpha, long padId)
    {
        var (labelInputs, labelTargets) = InstructionTuning.Batch(labels, padId);
        var loss = alpha * Pretrainer.Loss(model.Forward(labelInputs), labelTargets);
        if (alpha < 1 && rationales.Count > 0)
        {
            var (inputs, targets) = InstructionTuning.Batch(rationales, padId);
            loss = loss + (1 - alpha) * Pretrainer.Loss(model.Forward(inputs), targets);
        }
        return loss;
    }

    /// <summary>
    /// This rank's share of <see cref="Objective"/> on a global batch, forward and backward: the batch's examples are cut
    /// into micro-batches (<see cref="DataParallelRank.RowsOf"/>), and each of the rank's blocks adds α·(summed
    /// cross-entropy of its answer tokens) / (answer tokens of the whole batch) + (1 − α)·(the same over rationale tokens),
    /// so the ranks' shares add up to the objective of the global batch. Returns the share of the loss and the target tokens.
    /// With <paramref name="local"/> (DiLoCo) the backward divides by this rank's own answer and rationale tokens instead,
    /// so the replica follows the objective of its own rows; the loss returned is still the share of the global batch's.
    /// </summary>
    public static (double Loss, long Tokens) ObjectiveShare(CausalLanguageModel model, IReadOnlyList<(TokenizedInstruction Label, TokenizedInstruction? Rationale)> batch,
        double alpha, long padId, DataParallelRank rank, bool local = false)
    {
        static long Targets(TokenizedInstruction row) => Math.Max(0, row.Tokens.Length - Math.Max(row.PromptLength, 1));
        var labelTokens = Math.Max(1, batch.Sum(b => Targets(b.Label)));
        var rationaleTokens = Math.Max(1, batch.Sum(b => b.Rationale is { } r ? Targets(r) : 0));
        var (first, blocks) = rank.Blocks;
        var own = Enumerable.Range(first, blocks).SelectMany(block =>
        {
            var (row, rows) = rank.RowsOf(block, batch.Count);
            return batch.Skip(row).Take(rows);
        }).ToList();
        var ownLabelTokens = Math.Max(1, own.Sum(b => Targets(b.Label)));
        var ownRationaleTokens = Math.Max(1, own.Sum(b => b.Rationale is { } r ? Targets(r) : 0));
        double loss = 0;
        long tokens = 0;
        for (var block = first; block < first + blocks; block++)
        {
            var (row, rows) = rank.RowsOf(block, batch.Count);
            if (rows == 0) continue;
            var part = batch.Skip(row).Take(rows).ToList();
            using var scope = NewDisposeScope();
            Tensor? share = null, objective = null;
            foreach (var (examples, weight, total, ownTotal) in new[]
            {
                (part.Select(b => b.Label).ToList(), alpha, labelTokens, ownLabelTokens),
                (part.Where(b => b.Rationale is not null).Select(b => b.Rationale!).ToList(), 1 - alpha, rationaleTokens, ownRationaleTokens),
            })
            {
                if (examples.Count == 0 || weight == 0) continue;
                var (inputs, targets) = InstructionTuning.Batch(examples, padId);
                var logits = model.Forward(inputs);
                var summed = weight * nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Pretrainer.IgnoreIndex,
                    reduction: nn.Reduction.Sum);
                var term = summed / total;
                var ownTerm = local ? summed / ownTotal : term;
                share = share is null ? term : share + term;
                objective = objective is null ? ownTerm : objective + ownTerm;
                tokens += examples.Sum(Targets);
            }
            if (share is null) continue;
            // One backward per micro-batch: a rank that accumulates several blocks adds the same per-block gradients as the exchange does.
            objective!.backward();
            loss += share.item<float>();
        }
        return (loss, tokens);
    }

    /// <summary>Greedy <c>predict:</c> outputs for <paramref name="questions"/>, parsed and compared with their gold answers.</summary>
    public static (double Accuracy, IReadOnlyList<StudentPrediction> Predictions) Accuracy(CausalLanguageModel model, ITokenizer tokenizer, DistillationTask task,
        IReadOnlyList<StudentQuestion> questions, int maxTokens)
    {
        var outputs = Generate(model, tokenizer, questions.Select(q => StudentPrompts.Predict(q.Question)).ToList(), maxTokens);
        var predictions = questions.Select((q, i) =>
        {
            var answer = ParseLabel(task, outputs[i], q.Choices);
            return new StudentPrediction(q.Id, q.Gold, outputs[i], answer, answer == q.Gold);
        }).ToList();
        return (predictions.Count == 0 ? 0 : predictions.Count(p => p.Correct) / (double)predictions.Count, predictions);
    }

    /// <summary>Share of questions whose greedy <c>explain:</c> rationale ends in the gold answer ("The answer is X").</summary>
    public static double RationaleAccuracy(CausalLanguageModel model, ITokenizer tokenizer, DistillationTask task, IReadOnlyList<StudentQuestion> questions, int maxTokens)
    {
        var outputs = Generate(model, tokenizer, questions.Select(q => StudentPrompts.Explain(q.Question)).ToList(), maxTokens);
        return questions.Count == 0 ? 0 : questions.Where((q, i) => AnswerParser.ParsePrediction(task, outputs[i], q.Choices) == q.Gold).Count() / (double)questions.Count;
    }

    /// <summary>The answer in a <c>predict:</c> output: the first number (math), choice (multiple choice) or label (NLI).</summary>
    public static string? ParseLabel(DistillationTask task, string output, IReadOnlyList<string>? choices) => task switch
    {
        DistillationTask.Math => AnswerParser.ParseNumber(output),
        DistillationTask.Choice => AnswerParser.ParseChoice(output, choices),
        _ => AnswerParser.ParseNliLabel(output),
    };

    private static List<string> Generate(CausalLanguageModel model, ITokenizer tokenizer, IReadOnlyList<string> prompts, int maxTokens)
    {
        model.eval();
        var outputs = new List<string>(prompts.Count);
        var sampling = new SamplingOptions { MaxNewTokens = maxTokens, Temperature = 0 };
        foreach (var chunk in prompts.Chunk(EvaluationBatch))
        {
            var ids = chunk.Select(p => StudentPrompts.PromptIds(tokenizer, p)).ToList();
            var room = model.Config.MaxPositionEmbeddings - maxTokens;
            // A prompt longer than the context keeps its last tokens after BOS.
            ids = [.. ids.Select(p => p.Length <= room ? p : [p[0], .. p[^(room - 1)..]])];
            foreach (var generated in TextGenerator.Generate(model, ids, sampling, padId: tokenizer.PadId))
            {
                var end = Array.IndexOf(generated, tokenizer.EosId);
                outputs.Add(tokenizer.Decode(generated.AsSpan(0, end < 0 ? generated.Length : end)));
            }
        }
        return outputs;
    }

    /// <summary>Reports every step (validation accuracy is reported apart, by the evaluation at a checkpoint).</summary>
    private static IProgress<TrainingProgress> Progress(IProgress<StudentProgress>? progress, int stage, Action<double> loss, StudentHistory? history) =>
        new SynchronousProgress<TrainingProgress>(p =>
        {
            DistillationMetrics.StudentSteps.Add(1, stage == 1 ? SelfEvaluationStage : DistillationStage);
            loss(p.Loss);
            history?.Step(stage, p);
            progress?.Report(new StudentProgress(stage, p.Step, p.Steps, p.Loss, null));
        });

    /// <summary>
    /// A student run's <see cref="TrainingHistory"/>: steps numbered across both stages (the distillation stage after the
    /// self-evaluation steps), and the line of an evaluated step held back until its validation accuracy is known. The file
    /// is opened at the first step this process trains, cut back to the step before it: the checkpoint the run resumed from.
    /// </summary>
    private sealed class StudentHistory(string directory, int selfEvaluationSteps, int evalInterval, int steps, Func<double> tokensPerSecond)
    {
        private TrainingHistory? _history;
        private TrainingStep? _held;

        public void Step(int stage, TrainingProgress p)
        {
            var step = stage == 1 ? p.Step : selfEvaluationSteps + p.Step;
            _history ??= TrainingHistory.Open(directory, step - 1);
            var line = new TrainingStep(step, p.Loss, p.LearningRate, tokensPerSecond(), Stage: stage == 1 ? "self-evaluation" : "distillation");
            if (stage == 2 && (p.Step % evalInterval == 0 || p.Step == steps)) _held = line;
            else _history.Append(line);
        }

        public void Validation(int step, double accuracy)
        {
            if (_history is null || _held is null || _held.Step != selfEvaluationSteps + step) return;
            _history.Append(_held with { Validation = accuracy });
            _held = null;
        }

        /// <summary>Writes <c>loss.png</c>; a rerun of a finished run (no step trained) redraws it from the file.</summary>
        public void SavePlot() => (_history ?? TrainingHistory.Open(directory, int.MaxValue)).SavePlot("Student training loss", "validation accuracy");
    }

    private static (List<StudentEvaluation> Evaluations, (int Step, double Accuracy) Best) ResumeBest(string stage)
    {
        var path = Path.Combine(stage, EvaluationsFile);
        if (!File.Exists(path)) return ([], (0, 0));
        var evaluations = JsonSerializer.Deserialize<List<StudentEvaluation>>(File.ReadAllText(path)) ?? [];
        var best = (0, 0.0);
        foreach (var e in evaluations) if (best.Item1 == 0 || e.Accuracy > best.Item2) best = (e.Step, e.Accuracy);
        return (evaluations, best);
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    /// <summary>The student's tokenizer: a model folder's own, or a byte-level BPE learnt on the training texts (never the test split).</summary>
    private static HuggingFaceTokenizer LoadTokenizer(StudentOptions options, StudentCorpus corpus, string work)
    {
        if (Directory.Exists(options.Student))
        {
            if (!File.Exists(Path.Combine(options.Student, "tokenizer.json"))) throw new UserInputException($"The student folder {options.Student} has no tokenizer.json; give a Babel model folder or a preset ({string.Join(", ", ModelPresets.Names)}).");
            return HuggingFaceTokenizer.Load(options.Student);
        }
        var folder = Path.Combine(work, TokenizerFolder);
        if (!File.Exists(Path.Combine(folder, "tokenizer.json")))
        {
            // Every text of the training questions, whatever the setting, so all settings of a corpus share one vocabulary.
            var texts = corpus.Train.SelectMany(q => q.Cots.SelectMany(c => c.Evaluations.Select(e => e.Evaluation).Append(c.Cot))
                .Append(q.Question.Question).Append(q.Question.Gold)).Append("predict: explain: evaluate: answer:");
            var bpe = ByteLevelBpeTrainer.Train(texts, options.TokenizerVocab);
            AtomicFile.WriteDirectory(folder, bpe.Save);
        }
        return HuggingFaceTokenizer.Load(folder);
    }

    private static (CausalLanguageModel Model, string Source) CreateStudent(StudentOptions options, ITokenizer tokenizer)
    {
        if (Directory.Exists(options.Student))
        {
            var loaded = CausalLanguageModel.Load(options.Student);
            if (loaded.Config.VocabSize < tokenizer.VocabSize)
            {
                loaded.Dispose();
                throw new UserInputException($"The tokenizer in {options.Student} has {tokenizer.VocabSize} ids but the model only {loaded.Config.VocabSize}; use the model's own tokenizer.json.");
            }
            if (loaded.Config.MaxPositionEmbeddings < options.SequenceLength + 1)
            {
                loaded.Dispose();
                throw new UserInputException($"The student {options.Student} has a context of {loaded.Config.MaxPositionEmbeddings} tokens, shorter than --sequence-length {options.SequenceLength}; lower --sequence-length.");
            }
            return (loaded, "model:" + ModelFolderHash(options.Student));
        }
        var config = ModelPresets.Create(options.Student, tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId);
        config = config with { MaxPositionEmbeddings = Math.Max(config.MaxPositionEmbeddings, options.SequenceLength + options.MaxRationaleTokens) };
        var model = new CausalLanguageModel(config);
        model.InitializeWeights(options.Seed);
        return (model, "preset:" + options.Student);
    }

    private static string ModelFolderHash(string folder)
    {
        using var sha = System.Security.Cryptography.SHA256.Create();
        foreach (var file in Directory.GetFiles(folder).Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            var bytes = File.ReadAllBytes(file);
            sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
        }
        sha.TransformFinalBlock([], 0, 0);
        return Convert.ToHexStringLower(sha.Hash!)[..16];
    }

    /// <summary>Writes a finished run's <c>metrics.json</c>, <c>predictions.jsonl</c> and the chosen student with its tokenizer into <paramref name="outDirectory"/>.</summary>
    public static void WriteOutputs(string outDirectory, string workDirectory, StudentMetrics metrics, IReadOnlyList<StudentPrediction> predictions, string modelFolder)
    {
        var tokenizerSource = Directory.Exists(metrics.Options.Student) ? metrics.Options.Student : Path.Combine(workDirectory, TokenizerFolder);
        AtomicFile.WriteDirectory(Path.Combine(outDirectory, modelFolder), temporary =>
        {
            CopyFolder(Path.Combine(workDirectory, DistillationFolder, BestFolder), temporary);
            foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" }.Where(f => File.Exists(Path.Combine(tokenizerSource, f))))
            {
                File.Copy(Path.Combine(tokenizerSource, file), Path.Combine(temporary, file));
            }
        });
        AtomicFile.WriteAllText(Path.Combine(outDirectory, PredictionsFile), string.Concat(predictions.Select(p => JsonSerializer.Serialize(p) + "\n")));
        SaveMetrics(outDirectory, metrics);
    }

    /// <summary>Writes <c>metrics.json</c> atomically: the last file of a finished run's folder.</summary>
    public static void SaveMetrics(string outDirectory, StudentMetrics metrics) =>
        AtomicFile.WriteAllText(Path.Combine(outDirectory, MetricsFile), JsonSerializer.Serialize(metrics, _indented) + "\n");
}
