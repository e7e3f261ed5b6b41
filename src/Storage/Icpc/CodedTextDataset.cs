using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Babel.Storage.Icpc;

/// <summary>One labelled text: a line of <c>data.jsonl</c>. Labels are leaf codes of the label tree.</summary>
public sealed record CodedText(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("labels")] string[] Labels);

/// <summary>One leaf label: its code, a description, and its path from the top of the tree to the code (root excluded).</summary>
public sealed record LabelEntry(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("description")] string Description,
    [property: JsonPropertyName("path")] string[] Path);

/// <summary><c>labels.json</c>: the leaf labels with their paths, and descriptions of the inner nodes.</summary>
public sealed record LabelSet(
    [property: JsonPropertyName("scheme")] string Scheme,
    [property: JsonPropertyName("labels")] List<LabelEntry> Labels,
    [property: JsonPropertyName("nodes")] SortedDictionary<string, string> Nodes);

/// <summary><c>split.json</c>: record ids of each part.</summary>
public sealed record DatasetSplit(
    [property: JsonPropertyName("rule")] string Rule,
    [property: JsonPropertyName("train")] List<string> Train,
    [property: JsonPropertyName("validation")] List<string> Validation,
    [property: JsonPropertyName("test")] List<string> Test);

/// <summary><c>dataset.json</c>: where the data came from, its licence and counts.</summary>
public sealed record DatasetManifest(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("source")] string Source,
    [property: JsonPropertyName("licence")] string Licence,
    [property: JsonPropertyName("records")] int Records,
    [property: JsonPropertyName("labels")] int Labels,
    [property: JsonPropertyName("train")] int Train,
    [property: JsonPropertyName("validation")] int Validation,
    [property: JsonPropertyName("test")] int Test,
    [property: JsonPropertyName("min_examples_filter")] MinExamplesFilter? MinExamplesFilter = null);

/// <summary>
/// What <c>--min-examples</c> dropped: the records of every code with fewer than <see cref="MinExamples"/> records (before
/// the split). The label tree keeps every code and node; a dropped code simply has no records.
/// </summary>
public sealed record MinExamplesFilter(
    [property: JsonPropertyName("min_examples")] int MinExamples,
    [property: JsonPropertyName("kept_codes")] int KeptCodes,
    [property: JsonPropertyName("dropped_records")] int DroppedRecords,
    [property: JsonPropertyName("dropped_codes")] string[] DroppedCodes)
{
    /// <summary>
    /// Keeps the records all of whose codes label at least <paramref name="minExamples"/> records of
    /// <paramref name="records"/>; the rest are dropped and listed.
    /// </summary>
    public static (IReadOnlyList<CodedText> Kept, MinExamplesFilter Filter) Apply(IReadOnlyList<CodedText> records, int minExamples)
    {
        if (minExamples <= 0) throw new UserInputException($"--min-examples must be a positive number of records per code (got {minExamples}); 1 keeps every code.");
        var counts = records.SelectMany(r => r.Labels.Distinct(StringComparer.Ordinal)).GroupBy(c => c, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var dropped = counts.Where(c => c.Value < minExamples).Select(c => c.Key).Order(StringComparer.Ordinal).ToArray();
        var droppedSet = dropped.ToHashSet(StringComparer.Ordinal);
        var kept = records.Where(r => !r.Labels.Any(droppedSet.Contains)).ToList();
        var keptCodes = kept.SelectMany(r => r.Labels).Distinct(StringComparer.Ordinal).Count();
        return (kept, new MinExamplesFilter(minExamples, keptCodes, records.Count - kept.Count, dropped));
    }
}

/// <summary>
/// A folder of texts labelled with codes of a label tree: <c>data.jsonl</c> (id, text, labels),
/// <c>labels.json</c> (code, description, path), <c>split.json</c> and <c>dataset.json</c>.
/// ICPC-2 (<c>babel data icpc</c>) and users' own data (<c>babel data codes</c>, e.g. ICD-10) share it.
/// </summary>
public sealed class CodedTextDataset
{
    public const string DataFile = "data.jsonl";
    public const string LabelsFile = "labels.json";
    public const string SplitFile = "split.json";
    public const string ManifestFile = "dataset.json";

    /// <summary>How <see cref="Split"/> assigns records; recorded in <c>split.json</c>.</summary>
    public const string SplitRule =
        "per first label, records ordered by SHA-256 of id; n=1: train; n=2: train+test; n>=3: max(1,round(n/10)) validation, max(1,round(n/10)) test, rest train";

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly JsonSerializerOptions _line = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private CodedTextDataset(string directory, IReadOnlyList<CodedText> records, LabelSet labels, DatasetSplit split, DatasetManifest manifest)
    {
        Directory = directory;
        Records = records;
        Labels = labels;
        Split = split;
        Manifest = manifest;
    }

    public string Directory { get; }
    public IReadOnlyList<CodedText> Records { get; }
    public LabelSet Labels { get; }
    public DatasetSplit Split { get; }
    public DatasetManifest Manifest { get; }

    /// <summary>Validates and writes a dataset folder atomically (replacing it), with the deterministic split.</summary>
    public static CodedTextDataset Write(string directory, string name, string source, string licence, IReadOnlyList<CodedText> records, LabelSet labels,
        MinExamplesFilter? filter = null)
    {
        Validate(records, labels, directory);
        var split = SplitRecords(records);
        var manifest = new DatasetManifest(name, source, licence, records.Count, labels.Labels.Count, split.Train.Count, split.Validation.Count, split.Test.Count, filter);
        var full = Path.GetFullPath(directory);
        AtomicFile.WriteDirectory(full, temporary =>
        {
            using (var writer = new StreamWriter(Path.Combine(temporary, DataFile), false, new UTF8Encoding(false)))
            {
                foreach (var record in records) writer.WriteLine(JsonSerializer.Serialize(record, _line));
            }
            File.WriteAllText(Path.Combine(temporary, LabelsFile), JsonSerializer.Serialize(labels, _indented));
            File.WriteAllText(Path.Combine(temporary, SplitFile), JsonSerializer.Serialize(split, _indented));
            File.WriteAllText(Path.Combine(temporary, ManifestFile), JsonSerializer.Serialize(manifest, _indented));
        });
        return new CodedTextDataset(full, records, labels, split, manifest);
    }

    /// <summary>Reads and validates a dataset folder written by <see cref="Write"/>.</summary>
    public static CodedTextDataset Read(string directory)
    {
        var full = Path.GetFullPath(directory);
        foreach (var file in new[] { DataFile, LabelsFile, SplitFile, ManifestFile })
        {
            if (!File.Exists(Path.Combine(full, file)))
            {
                throw new UserInputException($"'{full}' has no {file}; write the dataset with 'babel data icpc' or 'babel data codes'.");
            }
        }
        var records = ReadJsonl(Path.Combine(full, DataFile));
        var labels = ReadJson<LabelSet>(Path.Combine(full, LabelsFile));
        var split = ReadJson<DatasetSplit>(Path.Combine(full, SplitFile));
        var manifest = ReadJson<DatasetManifest>(Path.Combine(full, ManifestFile));
        Validate(records, labels, full);
        var ids = records.Select(r => r.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var id in split.Train.Concat(split.Validation).Concat(split.Test))
        {
            if (!ids.Contains(id)) throw new UserInputException($"{SplitFile} in '{full}' names record '{id}', which {DataFile} lacks; write the dataset again.");
        }
        return new CodedTextDataset(full, records, labels, split, manifest);
    }

    /// <summary>
    /// Checks that ids are unique, texts are not empty, every record has a label, every label is a leaf of the tree,
    /// and every tree path ends in its code.
    /// </summary>
    public static void Validate(IReadOnlyList<CodedText> records, LabelSet labels, string source)
    {
        var codes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var label in labels.Labels)
        {
            if (label.Path.Length == 0 || label.Path[^1] != label.Code)
            {
                throw new UserInputException($"label '{label.Code}' in {source} has a path that does not end in its code; give each label its full path ending in the code.");
            }
            if (!codes.Add(label.Code)) throw new UserInputException($"label '{label.Code}' appears twice in {source}; list each code once.");
        }
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var record in records)
        {
            if (string.IsNullOrEmpty(record.Id)) throw new UserInputException($"a record in {source} has no id; give every record a unique \"id\".");
            if (!ids.Add(record.Id)) throw new UserInputException($"record id '{record.Id}' appears twice in {source}; make ids unique.");
            if (string.IsNullOrWhiteSpace(record.Text)) throw new UserInputException($"record '{record.Id}' in {source} has an empty text; remove it or give it a text.");
            if (record.Labels is null || record.Labels.Length == 0) throw new UserInputException($"record '{record.Id}' in {source} has no label; give it at least one code.");
            foreach (var code in record.Labels)
            {
                if (!codes.Contains(code))
                {
                    throw new UserInputException($"record '{record.Id}' in {source} is labelled '{code}', which is not in the label tree; add the code to the tree file or correct the label.");
                }
            }
        }
    }

    /// <summary>The deterministic split (<see cref="SplitRule"/>): every label keeps at least one training record.</summary>
    public static DatasetSplit SplitRecords(IReadOnlyList<CodedText> records)
    {
        var train = new List<string>();
        var validation = new List<string>();
        var test = new List<string>();
        foreach (var group in records.GroupBy(r => r.Labels[0], StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var ordered = group.Select(r => r.Id).OrderBy(HashOf, StringComparer.Ordinal).ThenBy(id => id, StringComparer.Ordinal).ToList();
            var n = ordered.Count;
            int validationCount = 0, testCount = 0;
            if (n == 2) testCount = 1;
            else if (n >= 3)
            {
                validationCount = Math.Max(1, (int)Math.Round(n / 10.0, MidpointRounding.AwayFromZero));
                testCount = Math.Max(1, (int)Math.Round(n / 10.0, MidpointRounding.AwayFromZero));
            }
            test.AddRange(ordered.Take(testCount));
            validation.AddRange(ordered.Skip(testCount).Take(validationCount));
            train.AddRange(ordered.Skip(testCount + validationCount));
        }
        return new DatasetSplit(SplitRule, Sorted(train), Sorted(validation), Sorted(test));
    }

    /// <summary>Reads a JSONL file of records (<c>id</c> optional: the line number is used when absent).</summary>
    public static List<CodedText> ReadJsonl(string path)
    {
        if (!File.Exists(path)) throw new UserInputException($"'{path}' does not exist; pass a JSONL file with one {{\"text\", \"labels\"}} record per line.");
        var records = new List<CodedText>();
        var number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            InputRecord? input;
            try
            {
                input = JsonSerializer.Deserialize<InputRecord>(line);
            }
            catch (JsonException exception)
            {
                throw new UserInputException($"line {number} of '{path}' is not valid JSON ({exception.Message}); write one JSON object per line.", exception);
            }
            if (input is null) throw new UserInputException($"line {number} of '{path}' is null; write one JSON object per line.");
            var labels = input.Labels ?? (input.Label is null ? null : [input.Label]);
            if (labels is null || labels.Length == 0)
            {
                throw new UserInputException($"line {number} of '{path}' has no \"labels\"; give each record a list of codes or label paths.");
            }
            records.Add(new CodedText(input.Id ?? number.ToString(System.Globalization.CultureInfo.InvariantCulture), input.Text ?? "", labels));
        }
        return records;
    }

    private static List<string> Sorted(List<string> ids) => [.. ids.Order(StringComparer.Ordinal)];

    private static string HashOf(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)));

    private static T ReadJson<T>(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path)) ?? throw new UserInputException($"'{path}' is empty; write the dataset again.");
        }
        catch (JsonException exception)
        {
            throw new UserInputException($"'{path}' is not valid JSON ({exception.Message}); write the dataset again.", exception);
        }
    }

    private sealed record InputRecord(
        [property: JsonPropertyName("id")] string? Id,
        [property: JsonPropertyName("text")] string? Text,
        [property: JsonPropertyName("labels")] string[]? Labels,
        [property: JsonPropertyName("label")] string? Label);
}
