using System.Text.Encodings.Web;
using System.Text.Json;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>
/// A distillation output folder as a finished generation job makes it: <c>cots.jsonl</c>, <c>evaluations.jsonl</c> and
/// <c>failures.jsonl</c> (every shard's records in plan order), <c>raw/SHARD.jsonl</c> (each shard's teacher exchanges),
/// optionally their Parquet form, and <c>manifest.json</c>. The shards are read one at a time while the files are
/// written, so a large dataset never sits in memory whole (the Parquet form excepted).
/// </summary>
/// <param name="manifest">What made the folder and what it holds.</param>
/// <param name="shards">The shard ids in plan order.</param>
/// <param name="readShard">Reads one shard's records.</param>
/// <param name="parquet">Also write <c>cots.parquet</c> and <c>evaluations.parquet</c>.</param>
public sealed class DistillationFolder(DistillationManifest manifest, IReadOnlyList<string> shards, Func<string, DistillationOutput> readShard, bool parquet)
{
    /// <summary>One JSON record a line, snake_case, non-ASCII text kept as it is.</summary>
    public static readonly JsonSerializerOptions Lines = new(TeacherCache.Json) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public DistillationManifest Manifest { get; } = manifest;

    public IReadOnlyList<string> Shards { get; } = shards;

    public bool Parquet { get; } = parquet;

    /// <summary>
    /// Writes the folder into <paramref name="directory"/>. Every file is written whole under a temporary name and
    /// renamed, and the manifest (which marks a complete folder) is removed first and written last, so a killed writer
    /// leaves no folder that looks complete, and writing again gives the same bytes: no record twice, none missing.
    /// </summary>
    public void Save(string directory)
    {
        var full = Path.GetFullPath(directory);
        Directory.CreateDirectory(full);
        File.Delete(Path.Combine(full, DistillationFiles.Manifest));
        // raw/ is rewritten from the shards: files another job wrote into this folder before must not linger.
        var raw = Path.Combine(full, DistillationFiles.Raw);
        if (Directory.Exists(raw)) Directory.Delete(raw, recursive: true);
        Directory.CreateDirectory(raw);
        var cotRows = new List<DistillationParquet.CotRow>();
        var evaluationRows = new List<DistillationParquet.EvaluationRow>();
        AtomicFile.Write(Path.Combine(full, DistillationFiles.Cots), cots =>
            AtomicFile.Write(Path.Combine(full, DistillationFiles.Evaluations), evaluations =>
                AtomicFile.Write(Path.Combine(full, DistillationFiles.Failures), failures =>
                {
                    foreach (var shard in Shards)
                    {
                        var output = readShard(shard);
                        AtomicFile.Write(Path.Combine(raw, shard + ".jsonl"), stream => WriteLines(stream, output.Raw));
                        WriteLines(cots, output.Cots);
                        WriteLines(evaluations, output.Evaluations);
                        WriteLines(failures, output.Failures);
                        if (!Parquet) continue;
                        cotRows.AddRange(output.Cots.Select(Row));
                        evaluationRows.AddRange(output.Evaluations.Select(Row));
                    }
                })));
        if (Parquet) DistillationParquet.Write(full, cotRows, evaluationRows);
        Manifest.Save(full);
    }

    /// <summary>The raw teacher exchanges of a written folder, shard by shard in plan order.</summary>
    public static IEnumerable<IReadOnlyList<RawExchange>> ReadRaw(string directory) =>
        Directory.GetFiles(Path.Combine(directory, DistillationFiles.Raw), "*.jsonl").Order(StringComparer.Ordinal)
            .Select(file => (IReadOnlyList<RawExchange>)[.. File.ReadLines(file).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<RawExchange>(l, TeacherCache.Json)!)]);

    /// <summary>"6 chains of thought (2 unparseable, teacher accuracy 50.0%), 12 evaluations (1 unparseable), 0 failed calls".</summary>
    public string Summary()
    {
        var counts = Manifest.Counts;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{counts.Cots} chains of thought ({counts.CotsUnparseable ?? 0} unparseable, teacher accuracy {Manifest.TeacherAccuracy:P1}), {counts.Evaluations} evaluations ({counts.EvaluationsUnparseable ?? 0} unparseable), {counts.Failures ?? 0} failed calls");
    }

    private static void WriteLines<T>(Stream stream, IEnumerable<T> records)
    {
        foreach (var record in records)
        {
            JsonSerializer.Serialize(stream, record, Lines);
            stream.WriteByte((byte)'\n');
        }
    }

    private static DistillationParquet.CotRow Row(CotRecord c) => new()
    {
        Id = c.Id, QuestionId = c.QuestionId, Sample = c.Sample, Question = c.Question,
        Choices = c.Choices is null ? null : JsonSerializer.Serialize(c.Choices), Cot = c.Cot, Answer = c.Answer, Gold = c.Gold,
        GoldAnswer = c.GoldAnswer, Correct = c.Correct, CacheKey = c.CacheKey,
    };

    private static DistillationParquet.EvaluationRow Row(EvaluationRecord e) => new()
    {
        Id = e.Id, CotId = e.CotId, QuestionId = e.QuestionId, CotSample = e.CotSample, Sample = e.Sample, Evaluation = e.Evaluation,
        Label = e.Label, CacheKey = e.CacheKey,
    };
}
