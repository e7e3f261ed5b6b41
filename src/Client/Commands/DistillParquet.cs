using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Distillation;
using Babel.Storage;
using Parquet.Serialization;

namespace Babel.Client.Commands;

/// <summary><c>--parquet</c>: <c>cots.parquet</c> and <c>evaluations.parquet</c> beside the JSONL files, one row per line, same field names.</summary>
internal static class DistillParquet
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

    public static async Task WriteAsync(string outDirectory, CancellationToken cancellationToken)
    {
        var cots = Read<CotRecord>(Path.Combine(outDirectory, DistillationFiles.Cots)).Select(c => new CotRow
        {
            Id = c.Id, QuestionId = c.QuestionId, Sample = c.Sample, Question = c.Question,
            Choices = c.Choices is null ? null : JsonSerializer.Serialize(c.Choices), Cot = c.Cot, Answer = c.Answer, Gold = c.Gold,
            GoldAnswer = c.GoldAnswer, Correct = c.Correct, CacheKey = c.CacheKey,
        }).ToList();
        var evaluations = Read<EvaluationRecord>(Path.Combine(outDirectory, DistillationFiles.Evaluations)).Select(e => new EvaluationRow
        {
            Id = e.Id, CotId = e.CotId, QuestionId = e.QuestionId, CotSample = e.CotSample, Sample = e.Sample, Evaluation = e.Evaluation,
            Label = e.Label, CacheKey = e.CacheKey,
        }).ToList();
        await AtomicFile.WriteAsync(Path.Combine(outDirectory, CotsFile), (stream, ct) => ParquetSerializer.SerializeAsync(cots, stream, cancellationToken: ct), cancellationToken);
        await AtomicFile.WriteAsync(Path.Combine(outDirectory, EvaluationsFile), (stream, ct) => ParquetSerializer.SerializeAsync(evaluations, stream, cancellationToken: ct), cancellationToken);
    }

    private static IEnumerable<T> Read<T>(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<T>(l, TeacherCache.Json)!);
}
