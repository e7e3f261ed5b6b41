using System.Text.Json.Serialization;
using Parquet.Serialization;

namespace Babel.Storage;

/// <summary>
/// The Parquet form of a distillation folder (<c>--parquet</c>): <c>cots.parquet</c> and <c>evaluations.parquet</c> beside
/// the JSONL files, one row per line, under the JSONL field names.
/// </summary>
public static class DistillationParquet
{
    public const string CotsFile = "cots.parquet";
    public const string EvaluationsFile = "evaluations.parquet";

    /// <summary>A row of <c>cots.parquet</c>; <c>choices</c> is the JSON array as text (null when the question has none).</summary>
    public sealed class CotRow
    {
        [JsonPropertyName("id")]
        public string Id { get; set; } = "";
        [JsonPropertyName("question_id")]
        public string QuestionId { get; set; } = "";
        [JsonPropertyName("sample")]
        public int Sample { get; set; }
        [JsonPropertyName("question")]
        public string Question { get; set; } = "";
        [JsonPropertyName("choices")]
        public string? Choices { get; set; }
        [JsonPropertyName("cot")]
        public string Cot { get; set; } = "";
        [JsonPropertyName("answer")]
        public string? Answer { get; set; }
        [JsonPropertyName("gold")]
        public string Gold { get; set; } = "";
        [JsonPropertyName("gold_answer")]
        public string? GoldAnswer { get; set; }
        [JsonPropertyName("correct")]
        public bool? Correct { get; set; }
        [JsonPropertyName("cache_key")]
        public string CacheKey { get; set; } = "";
    }

    /// <summary>A row of <c>evaluations.parquet</c>.</summary>
    public sealed class EvaluationRow
    {
        [JsonPropertyName("id")]
        public string Id { get; set; } = "";
        [JsonPropertyName("cot_id")]
        public string CotId { get; set; } = "";
        [JsonPropertyName("question_id")]
        public string QuestionId { get; set; } = "";
        [JsonPropertyName("cot_sample")]
        public int CotSample { get; set; }
        [JsonPropertyName("sample")]
        public int Sample { get; set; }
        [JsonPropertyName("evaluation")]
        public string Evaluation { get; set; } = "";
        [JsonPropertyName("label")]
        public string? Label { get; set; }
        [JsonPropertyName("cache_key")]
        public string CacheKey { get; set; } = "";
    }

    /// <summary>Writes <see cref="CotsFile"/> and <see cref="EvaluationsFile"/> into <paramref name="directory"/>, each atomically.</summary>
    public static void Write(string directory, IReadOnlyList<CotRow> cots, IReadOnlyList<EvaluationRow> evaluations)
    {
        // Parquet.Net serialises only asynchronously; its work is the stream in hand, with no context to wait on.
        AtomicFile.Write(Path.Combine(directory, CotsFile), stream => ParquetSerializer.SerializeAsync(cots, stream).GetAwaiter().GetResult());
        AtomicFile.Write(Path.Combine(directory, EvaluationsFile), stream => ParquetSerializer.SerializeAsync(evaluations, stream).GetAwaiter().GetResult());
    }
}
