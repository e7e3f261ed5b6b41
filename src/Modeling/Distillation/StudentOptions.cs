using System.Text.Json.Serialization;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>
/// The settings of the "Mind's Mirror" ablation: what a student learns from the teacher besides the answer.
/// </summary>
public static class StudentSettings
{
    /// <summary>Standard fine-tuning: <c>predict:</c> question → answer only.</summary>
    public const string Standard = "standard";
    /// <summary>One chain of thought per question: <c>predict:</c> and <c>explain:</c>.</summary>
    public const string Cot = "cot";
    /// <summary>One chain of thought, after a first stage of self-evaluation (<c>evaluate:</c>) on it.</summary>
    public const string CotSelfEvaluation = "cot-se";
    /// <summary>Every chain of thought the teacher wrote, each question repeated once per chain.</summary>
    public const string MultiCot = "multi-cot";
    /// <summary>Every chain of thought, after a first stage of self-evaluation on all of them.</summary>
    public const string MultiCotSelfEvaluation = "multi-cot-se";

    public static IReadOnlyList<string> All { get; } = [Standard, Cot, CotSelfEvaluation, MultiCot, MultiCotSelfEvaluation];

    public static string Require(string name) => All.FirstOrDefault(s => s == name.Trim().ToLowerInvariant())
        ?? throw new UserInputException($"Unknown setting '{name}'; use one of: {string.Join(", ", All)}.");

    public static bool UsesRationales(string setting) => setting != Standard;

    public static bool UsesAllCots(string setting) => setting is MultiCot or MultiCotSelfEvaluation;

    public static bool UsesSelfEvaluation(string setting) => setting is CotSelfEvaluation or MultiCotSelfEvaluation;
}

/// <summary>Where a student's answer labels come from: the gold answers, or the teacher's own answers.</summary>
public static class StudentLabels
{
    public const string Gold = "gt";
    public const string Teacher = "llm";

    public static IReadOnlyList<string> All { get; } = [Gold, Teacher];

    public static string Require(string name) => All.FirstOrDefault(s => s == name.Trim().ToLowerInvariant())
        ?? throw new UserInputException($"Unknown label source '{name}'; use gt (gold answers) or llm (the teacher's answers).");
}

/// <summary>Which of the teacher's chains and self-evaluations a student with gold labels (gt) learns from.</summary>
public static class StudentRationales
{
    /// <summary>The paper's: every chain of thought is a rationale for the gold label, and every self-evaluation is kept.</summary>
    public const string All = "all";
    /// <summary>Babel's filter: only chains that reach the gold answer, and only self-evaluations whose verdict agrees with it.</summary>
    public const string Consistent = "consistent";

    public static IReadOnlyList<string> Names { get; } = [All, Consistent];

    public static string Require(string name) => Names.FirstOrDefault(s => s == name.Trim().ToLowerInvariant())
        ?? throw new UserInputException($"Unknown rationale filter '{name}'; use all (the paper's: every chain and evaluation) or consistent (only those that agree with the gold answer).");
}

/// <summary>What the self-evaluation stage (stage 1) of the <c>-se</c> settings trains on.</summary>
public static class StudentSelfEvaluationForms
{
    /// <summary>
    /// The paper's (the authors' code): the evaluation's verdict (correct, wrong, uncertain) is the label and its analysis
    /// (the text before "Evaluation result:") the rationale, weighted α and 1 − α as in the distillation stage; an
    /// evaluation without a readable verdict is left out.
    /// </summary>
    public const string LabelRationale = "label-rationale";
    /// <summary>Babel's earlier form: the whole evaluation text is one output after <c>evaluate:</c>.</summary>
    public const string Whole = "whole";

    public static IReadOnlyList<string> Names { get; } = [LabelRationale, Whole];

    public static string Require(string name) => Names.FirstOrDefault(s => s == name.Trim().ToLowerInvariant())
        ?? throw new UserInputException($"Unknown self-evaluation form '{name}'; use label-rationale (the paper's: verdict as label, analysis as rationale) or whole (the whole evaluation as one output).");
}

/// <summary>How many optimizer steps the <c>-se</c> settings get against the settings without self-evaluation.</summary>
public static class StudentBudgets
{
    /// <summary>The paper's: the self-evaluation stage comes on top of the distillation stage's steps.</summary>
    public const string Extra = "extra";
    /// <summary>Compute-matched: both stages together take the steps of the distillation stage of a setting without self-evaluation.</summary>
    public const string Matched = "matched";

    public static IReadOnlyList<string> Names { get; } = [Extra, Matched];

    public static string Require(string name) => Names.FirstOrDefault(s => s == name.Trim().ToLowerInvariant())
        ?? throw new UserInputException($"Unknown step budget '{name}'; use extra (the paper's: self-evaluation steps on top) or matched (the same total steps as without self-evaluation).");
}

/// <summary>Hyper-parameters of one student run; every value is recorded in its <c>metrics.json</c>.</summary>
public sealed record StudentOptions
{
    [JsonPropertyName("setting")] public string Setting { get; init; } = StudentSettings.MultiCotSelfEvaluation;
    [JsonPropertyName("labels")] public string Labels { get; init; } = StudentLabels.Gold;
    /// <summary>With gold labels: every chain and evaluation (the paper's, <see cref="StudentRationales.All"/>) or only those that agree with the gold answer.</summary>
    [JsonPropertyName("rationales")] public string Rationales { get; init; } = StudentRationales.All;
    /// <summary>A model preset (trained from scratch with a tokenizer learnt on the data) or a Babel model folder to start from.</summary>
    [JsonPropertyName("student")] public string Student { get; init; } = "micro";
    /// <summary>Weight of the answer loss: L = α·L_label + (1 − α)·L_rationale.</summary>
    [JsonPropertyName("alpha")] public double Alpha { get; init; } = 0.5;
    /// <summary>Optimizer steps of the distillation stage (the second stage of a curriculum); with <see cref="StudentBudgets.Matched"/>, of both stages together.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; } = 1000;
    /// <summary>Optimizer steps of the self-evaluation stage, in the settings that have one.</summary>
    [JsonPropertyName("self_evaluation_steps")] public int SelfEvaluationSteps { get; init; } = 300;
    /// <summary>What stage 1 trains on: the verdict as label and the analysis as rationale (the paper's), or the whole evaluation.</summary>
    [JsonPropertyName("self_evaluation_form")] public string SelfEvaluationForm { get; init; } = StudentSelfEvaluationForms.LabelRationale;
    /// <summary>Whether the self-evaluation steps come on top (the paper's) or out of <see cref="Steps"/> (compute-matched).</summary>
    [JsonPropertyName("budget")] public string Budget { get; init; } = StudentBudgets.Extra;
    /// <summary>Chains of thought per question a student learns from, the first in sample order; 0 takes every chain the teacher wrote.</summary>
    [JsonPropertyName("cots")] public int Cots { get; init; }
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 32;
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; } = 3e-3;
    [JsonPropertyName("warmup_fraction")] public double WarmupFraction { get; init; } = 0.05;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.1;
    /// <summary>Longest example in tokens (prompt and output); longer examples are left out and counted.</summary>
    [JsonPropertyName("sequence_length")] public int SequenceLength { get; init; } = 320;
    /// <summary>Steps between validation evaluations (and resumable checkpoints).</summary>
    [JsonPropertyName("eval_interval")] public int EvalInterval { get; init; } = 250;
    [JsonPropertyName("validation_fraction")] public double ValidationFraction { get; init; } = 0.1;
    /// <summary>Tokens the student may write for an answer.</summary>
    [JsonPropertyName("max_answer_tokens")] public int MaxAnswerTokens { get; init; } = 12;
    /// <summary>Tokens the student may write for a chain of thought, when its own rationales are scored on the test split.</summary>
    [JsonPropertyName("max_rationale_tokens")] public int MaxRationaleTokens { get; init; } = 96;
    /// <summary>Vocabulary of the tokenizer learnt for a student trained from scratch.</summary>
    [JsonPropertyName("tokenizer_vocab")] public int TokenizerVocab { get; init; } = 640;
    [JsonPropertyName("seed")] public long Seed { get; init; } = 1;
    [JsonPropertyName("threads")] public int Threads { get; init; } = 2;
    /// <summary>Data-parallel runs only: DiLoCo's local steps between synchronisations (<see cref="PretrainingOptions.SyncEvery"/>; 1: gradients summed every step).</summary>
    [JsonPropertyName("sync_every")] public int SyncEvery { get; init; } = 1;
    [JsonPropertyName("outer_lr")] public double OuterLearningRate { get; init; } = 0.7;
    [JsonPropertyName("outer_momentum")] public double OuterMomentum { get; init; } = 0.9;

    public StudentOptions Validate()
    {
        StudentSettings.Require(Setting);
        StudentLabels.Require(Labels);
        StudentRationales.Require(Rationales);
        StudentSelfEvaluationForms.Require(SelfEvaluationForm);
        StudentBudgets.Require(Budget);
        if (string.IsNullOrWhiteSpace(Student)) throw new UserInputException("--student needs a preset name or a model folder.");
        if (!(Alpha >= 0 && Alpha <= 1)) throw new UserInputException($"--alpha must lie in [0, 1] (got {Alpha}).");
        if (Steps <= 0) throw new UserInputException($"--steps must be positive (got {Steps}).");
        if (SelfEvaluationSteps <= 0) throw new UserInputException($"--self-evaluation-steps must be positive (got {SelfEvaluationSteps}).");
        if (Cots < 0) throw new UserInputException($"--cots must be zero (every chain) or positive (got {Cots}).");
        if (StudentBudgets.Require(Budget) == StudentBudgets.Matched && StudentSettings.UsesSelfEvaluation(StudentSettings.Require(Setting)) && Steps <= SelfEvaluationSteps)
        {
            throw new UserInputException($"With --budget matched, --steps ({Steps}) must exceed --self-evaluation-steps ({SelfEvaluationSteps}): both stages share them.");
        }
        if (BatchSize <= 0) throw new UserInputException($"--batch-size must be positive (got {BatchSize}).");
        if (!(LearningRate > 0)) throw new UserInputException($"--lr must be positive (got {LearningRate}).");
        if (SequenceLength < 8) throw new UserInputException($"--sequence-length must be at least 8 (got {SequenceLength}).");
        if (EvalInterval <= 0) throw new UserInputException($"--eval-interval must be positive (got {EvalInterval}).");
        if (!(ValidationFraction > 0 && ValidationFraction < 1)) throw new UserInputException($"--validation-fraction must lie in (0, 1) (got {ValidationFraction}).");
        if (MaxAnswerTokens <= 0 || MaxRationaleTokens < 0) throw new UserInputException("--max-answer-tokens must be positive and --max-rationale-tokens zero or more.");
        if (Threads <= 0) throw new UserInputException($"--threads must be positive (got {Threads}).");
        Stage(1).Validate();
        return this with
        {
            Setting = StudentSettings.Require(Setting), Labels = StudentLabels.Require(Labels), Rationales = StudentRationales.Require(Rationales),
            SelfEvaluationForm = StudentSelfEvaluationForms.Require(SelfEvaluationForm), Budget = StudentBudgets.Require(Budget),
        };
    }

    /// <summary>Optimizer steps of stage 1: <see cref="SelfEvaluationSteps"/> in the <c>-se</c> settings, else none.</summary>
    [JsonIgnore]
    public int SelfEvaluationStageSteps => StudentSettings.UsesSelfEvaluation(Setting) ? SelfEvaluationSteps : 0;

    /// <summary>Optimizer steps of stage 2: <see cref="Steps"/>, less the stage-1 steps under <see cref="StudentBudgets.Matched"/>.</summary>
    [JsonIgnore]
    public int DistillationStageSteps => Budget == StudentBudgets.Matched ? Steps - SelfEvaluationStageSteps : Steps;

    /// <summary>Optimizer steps of the whole run, both stages.</summary>
    [JsonIgnore]
    public int TotalSteps => SelfEvaluationStageSteps + DistillationStageSteps;

    /// <summary>The weight of the label loss in stage 1: α for the paper's form (as in stage 2), 1 for the whole evaluation (it has no rationale).</summary>
    [JsonIgnore]
    public double SelfEvaluationAlpha => SelfEvaluationForm == StudentSelfEvaluationForms.Whole ? 1.0 : Alpha;

    /// <summary>The optimizer settings of a stage of <paramref name="steps"/> steps.</summary>
    public PretrainingOptions Stage(int steps) => new()
    {
        Steps = steps, BatchSize = BatchSize, SequenceLength = SequenceLength, LearningRate = LearningRate, WarmupFraction = WarmupFraction,
        WeightDecay = WeightDecay, Seed = Seed, CheckpointInterval = EvalInterval, Threads = Threads,
        SyncEvery = SyncEvery, OuterLearningRate = OuterLearningRate, OuterMomentum = OuterMomentum,
    };
}
