using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>A question with its normalised gold answer (and choices, for multiple choice).</summary>
public sealed record StudentQuestion(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("question")] string Question,
    [property: JsonPropertyName("gold")] string Gold,
    [property: JsonPropertyName("choices")] IReadOnlyList<string>? Choices);

/// <summary>A teacher's self-evaluation of one chain of thought, and its parsed verdict (null when unparseable).</summary>
public sealed record TeacherEvaluation(
    [property: JsonPropertyName("sample")] int Sample,
    [property: JsonPropertyName("evaluation")] string Evaluation,
    [property: JsonPropertyName("label")] string? Label);

/// <summary>A teacher's chain of thought, its parsed answer (null when unparseable), whether that matches the gold answer, and its evaluations.</summary>
public sealed record TeacherCot(
    [property: JsonPropertyName("sample")] int Sample,
    [property: JsonPropertyName("cot")] string Cot,
    [property: JsonPropertyName("answer")] string? Answer,
    [property: JsonPropertyName("correct")] bool Correct,
    [property: JsonPropertyName("evaluations")] IReadOnlyList<TeacherEvaluation> Evaluations);

/// <summary>A training question with every chain of thought the teacher wrote for it, in sample order.</summary>
public sealed record DistilledQuestion(
    [property: JsonPropertyName("question")] StudentQuestion Question,
    [property: JsonPropertyName("cots")] IReadOnlyList<TeacherCot> Cots);

/// <summary>
/// What a student trains and is tested on: the distillation folder's questions with their chains of thought and
/// self-evaluations, and a held-out test split with gold answers. Written as one JSON file, so a grid job ships it to
/// its workers as one artifact.
/// </summary>
public sealed record StudentCorpus(
    [property: JsonPropertyName("task")] string Task,
    [property: JsonPropertyName("source")] string Source,
    [property: JsonPropertyName("test_source")] string TestSource,
    [property: JsonPropertyName("train")] IReadOnlyList<DistilledQuestion> Train,
    [property: JsonPropertyName("test")] IReadOnlyList<StudentQuestion> Test,
    [property: JsonPropertyName("gold_unparseable")] int GoldUnparseable)
{
    public const string FileName = "student-corpus.json";

    private static readonly JsonSerializerOptions _json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [JsonIgnore]
    public DistillationTask TaskKind => DistillationTasks.Parse(Task);

    /// <summary>
    /// Reads a distillation folder (<c>babel distill generate</c> or <c>babel data arithmetic</c> output) and its test
    /// split: <paramref name="testSpec"/> (<c>jsonl:PATH</c> or <c>gsm8k:PATH</c>), or by default the <c>test</c> split
    /// beside the dataset named in the folder's manifest.
    /// </summary>
    public static StudentCorpus Load(string folder, string? testSpec = null)
    {
        var directory = Path.GetFullPath(folder);
        var cotsFile = Path.Combine(directory, DistillationFiles.Cots);
        var manifestFile = Path.Combine(directory, DistillationFiles.Manifest);
        if (!Directory.Exists(directory) || !File.Exists(cotsFile) || !File.Exists(manifestFile))
        {
            throw new UserInputException($"{folder} is not a distillation folder (it needs {DistillationFiles.Cots} and {DistillationFiles.Manifest}); pass the --out folder of 'babel distill generate' or 'babel data arithmetic'.");
        }
        var manifest = DistillationManifest.Load(directory);
        var task = DistillationTasks.Parse(manifest.Task);
        var evaluations = ReadEvaluations(Path.Combine(directory, DistillationFiles.Evaluations));
        var questions = new Dictionary<string, (StudentQuestion Question, List<TeacherCot> Cots)>(StringComparer.Ordinal);
        var order = new List<string>();
        var goldUnparseable = new HashSet<string>(StringComparer.Ordinal);
        ReadLines<CotRecord>(cotsFile, (cot, line) =>
        {
            if (cot.QuestionId is null || cot.Question is null || cot.Cot is null || cot.Id is null)
            {
                throw new InvalidDataException($"{cotsFile} line {line} lacks id, question_id, question or cot; it is not a chain-of-thought record of 'babel distill generate'");
            }
            if (cot.GoldAnswer is null)
            {
                goldUnparseable.Add(cot.QuestionId);
                return;
            }
            if (!questions.TryGetValue(cot.QuestionId, out var entry))
            {
                entry = (new StudentQuestion(cot.QuestionId, cot.Question, cot.GoldAnswer, cot.Choices), []);
                questions[cot.QuestionId] = entry;
                order.Add(cot.QuestionId);
            }
            var own = evaluations.TryGetValue(cot.Id, out var list) ? list.OrderBy(e => e.Sample).ToList() : [];
            entry.Cots.Add(new TeacherCot(cot.Sample, cot.Cot, cot.Answer, cot.Answer is not null && cot.Answer == cot.GoldAnswer, own));
        });
        if (order.Count == 0) throw new UserInputException($"{cotsFile} holds no chain of thought with a readable gold answer; nothing to train a student on.");
        var train = order.Select(id => new DistilledQuestion(questions[id].Question, [.. questions[id].Cots.OrderBy(c => c.Sample)])).ToList();

        // The programmatic set records its questions relative to the folder, so the folder can move.
        var (format, path) = testSpec is not null
            ? DistillationDataset.ParseSpec(testSpec)
            : (manifest.Dataset.Format, Path.GetDirectoryName(manifest.DatasetFile(directory)
                ?? throw new UserInputException($"{manifestFile} names no dataset file to find the test split beside; give one with --test jsonl:PATH or gsm8k:PATH."))!);
        if (testSpec is null && !File.Exists(Path.Combine(path, "test.jsonl")))
        {
            throw new UserInputException($"No test split beside the distillation dataset ({Path.Combine(path, "test.jsonl")} does not exist); give one with --test jsonl:PATH or gsm8k:PATH.");
        }
        var testFile = DistillationDataset.ResolveFile(path, "test");
        var test = new List<StudentQuestion>();
        foreach (var record in DistillationDataset.Read(format, testFile, "test"))
        {
            var gold = AnswerParser.ParseGold(task, record.Gold, record.Choices)
                ?? throw new UserInputException($"The answer '{Shorten(record.Gold)}' of test record {record.Id} in {testFile} is not a {task.Name()} answer; the test split must be of the distillation data's task ({task.Name()}).");
            test.Add(new StudentQuestion(record.Id, record.Question, gold, record.Choices));
        }
        var trainTexts = new HashSet<string>(train.Select(q => q.Question.Question), StringComparer.Ordinal);
        var shared = test.Count(q => trainTexts.Contains(q.Question));
        if (shared > 0)
        {
            throw new UserInputException($"{shared} questions of the test split {testFile} are also in the distillation data; give a held-out split with --test.");
        }
        return new StudentCorpus(task.Name(), directory, testFile, train, test, goldUnparseable.Count);
    }

    /// <summary>
    /// The training questions and the validation split carved from them: a question goes to validation when the hash of
    /// its id falls below <paramref name="fraction"/>, so the split does not depend on seeds or file order (and never
    /// touches the test split).
    /// </summary>
    public (IReadOnlyList<DistilledQuestion> Train, IReadOnlyList<StudentQuestion> Validation) Split(double fraction)
    {
        var train = new List<DistilledQuestion>();
        var validation = new List<StudentQuestion>();
        foreach (var question in Train)
        {
            var hash = BitConverter.ToUInt64(SHA256.HashData(Encoding.UTF8.GetBytes("validation|" + question.Question.Id)));
            if (hash / (double)ulong.MaxValue < fraction) validation.Add(question.Question);
            else train.Add(question);
        }
        if (train.Count == 0 || validation.Count == 0)
        {
            throw new UserInputException($"A validation fraction of {fraction} leaves {train.Count} training and {validation.Count} validation questions out of {Train.Count}; both splits need questions (change --validation-fraction or give more data).");
        }
        return (train, validation);
    }

    /// <summary>SHA-256 of the corpus as serialised: a run's checkpoint records it, so a resumed run refuses other data.</summary>
    public string Fingerprint() => Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(this, _json)))[..16];

    public void Save(string path) => AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(this, _json));

    /// <summary>Where a saved corpus was read from (<see cref="Source"/>, <see cref="TestSource"/>), without materialising its questions.</summary>
    public static (string Source, string TestSource) ReadSources(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize<Sources>(json, _json) is { Source: not null, TestSource: not null } sources
            ? (sources.Source, sources.TestSource)
            : throw new InvalidDataException("A student corpus without its source and test source.");

    private sealed record Sources([property: JsonPropertyName("source")] string Source, [property: JsonPropertyName("test_source")] string TestSource);

    public static StudentCorpus Read(string path) =>
        JsonSerializer.Deserialize<StudentCorpus>(File.ReadAllBytes(path), _json) ?? throw new InvalidDataException($"{path} is empty.");

    private static Dictionary<string, List<TeacherEvaluation>> ReadEvaluations(string file)
    {
        var byCot = new Dictionary<string, List<TeacherEvaluation>>(StringComparer.Ordinal);
        if (!File.Exists(file)) return byCot;
        ReadLines<EvaluationRecord>(file, (e, line) =>
        {
            if (e.CotId is null || e.Evaluation is null)
            {
                throw new InvalidDataException($"{file} line {line} lacks cot_id or evaluation; it is not a self-evaluation record of 'babel distill generate'");
            }
            if (!byCot.TryGetValue(e.CotId, out var list)) byCot[e.CotId] = list = [];
            list.Add(new TeacherEvaluation(e.Sample, e.Evaluation, e.Label));
        });
        return byCot;
    }

    private static readonly UTF8Encoding _strictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>Each JSON line of <paramref name="file"/>, decoded line by line so that invalid UTF-8 is reported at its line.</summary>
    private static void ReadLines<T>(string file, Action<T, int> record)
    {
        var bytes = File.ReadAllBytes(file);
        var line = 0;
        for (var start = 0; start < bytes.Length;)
        {
            var end = Array.IndexOf(bytes, (byte)'\n', start);
            if (end < 0) end = bytes.Length;
            line++;
            string text;
            try
            {
                text = _strictUtf8.GetString(bytes, start, end - start);
            }
            catch (DecoderFallbackException)
            {
                throw new UserInputException($"{file} line {line} is not valid UTF-8; rerun the command that wrote the folder.");
            }
            start = end + 1;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                record(JsonSerializer.Deserialize<T>(text, TeacherCache.Json) ?? throw new InvalidDataException($"{file} line {line} is null"), line);
            }
            catch (JsonException e)
            {
                throw new UserInputException($"{file} line {line} is not a valid record ({e.Message}); rerun the command that wrote the folder.", e);
            }
            catch (InvalidDataException e)
            {
                throw new UserInputException(e.Message + ".", e);
            }
        }
    }

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
