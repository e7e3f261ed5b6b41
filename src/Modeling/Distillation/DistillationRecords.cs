namespace Babel.Modeling.Distillation;

/// <summary>One line of <c>cots.jsonl</c>: a sampled chain of thought, its parsed answer and whether it matches the gold answer.</summary>
public sealed record CotRecord(
    string Id, string QuestionId, int Sample, string Question, IReadOnlyList<string>? Choices, string Cot,
    string? Answer, string Gold, string? GoldAnswer, bool? Correct, string CacheKey);

/// <summary>One line of <c>evaluations.jsonl</c>: a self-evaluation of one chain of thought and its parsed label.</summary>
public sealed record EvaluationRecord(string Id, string CotId, string QuestionId, int CotSample, int Sample, string Evaluation, string? Label, string CacheKey);

/// <summary>One line of <c>failures.jsonl</c>: a teacher call that failed for good, and why.</summary>
public sealed record DistillationFailure(string QuestionId, string Role, int CotSample, int Sample, string Reason);

/// <summary>One line of <c>raw/SHARD.jsonl</c>: a teacher exchange, and whether it came from the cache this time.</summary>
public sealed record RawExchange(string QuestionId, string Role, int CotSample, TeacherExchange Exchange);

/// <summary>What a slice of questions produced.</summary>
public sealed record DistillationOutput(
    IReadOnlyList<CotRecord> Cots, IReadOnlyList<EvaluationRecord> Evaluations, IReadOnlyList<DistillationFailure> Failures,
    IReadOnlyList<RawExchange> Raw, IReadOnlyDictionary<string, long> Totals);

/// <summary>The files of a distillation folder, as <c>babel distill generate</c> writes them and the student trainer reads them.</summary>
public static class DistillationFiles
{
    public const string Cots = "cots.jsonl";
    public const string Evaluations = "evaluations.jsonl";
    public const string Failures = "failures.jsonl";
    public const string Manifest = "manifest.json";
    /// <summary>The folder of each shard's raw teacher exchanges, <c>raw/SHARD.jsonl</c>.</summary>
    public const string Raw = "raw";
}
