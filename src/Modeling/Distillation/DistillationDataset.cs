using System.Globalization;
using System.Text.Json;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>One question of a distillation dataset: its id, text, raw gold answer and, for multiple choice, the choices.</summary>
public sealed record DistillationQuestion(string Id, string Question, string Gold, IReadOnlyList<string>? Choices = null);

/// <summary>
/// Dataset adapters. <c>gsm8k:PATH</c> reads GSM8K's JSONL (<c>question</c>, <c>answer</c> ending in <c>#### N</c>; ids are
/// <c>SPLIT-LINE</c>); <c>jsonl:PATH</c> reads the generic form <c>{"id", "question", "answer", "choices"?}</c> (or
/// <c>premise</c> + <c>hypothesis</c> for NLI). PATH is a file, or a folder holding <c>SPLIT.jsonl</c>.
/// </summary>
public static class DistillationDataset
{
    public static (string Format, string Path) ParseSpec(string spec)
    {
        var colon = spec.IndexOf(':', StringComparison.Ordinal);
        var format = colon < 0 ? "" : spec[..colon].ToLowerInvariant();
        if (format is not ("gsm8k" or "jsonl") || colon == spec.Length - 1)
        {
            throw new UserInputException($"--dataset '{spec}' is not understood; give gsm8k:PATH or jsonl:PATH.");
        }
        return (format, spec[(colon + 1)..]);
    }

    /// <summary>The file a dataset spec and split name: PATH itself, or PATH/SPLIT.jsonl for a folder.</summary>
    public static string ResolveFile(string path, string split)
    {
        if (Directory.Exists(path))
        {
            var file = System.IO.Path.Combine(path, split + ".jsonl");
            return File.Exists(file) ? file : throw new UserInputException($"The dataset folder {path} has no {split}.jsonl; pass the file itself or a folder with {split}.jsonl.");
        }
        return File.Exists(path) ? path : throw new UserInputException($"The dataset file {path} does not exist; check the path after gsm8k: or jsonl:.");
    }

    public static IReadOnlyList<DistillationQuestion> Read(string format, string file, string split) => Read(format, File.ReadLines(file), file, split);

    /// <summary>The questions in <paramref name="lines"/>; <paramref name="file"/> names them in messages.</summary>
    public static IReadOnlyList<DistillationQuestion> Read(string format, IEnumerable<string> lines, string file, string split)
    {
        var questions = new List<DistillationQuestion>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var lineNumber = 0;
        foreach (var line in lines)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            DistillationQuestion question;
            try
            {
                using var document = JsonDocument.Parse(line);
                question = format == "gsm8k" ? Gsm8k(document.RootElement, split, lineNumber) : Generic(document.RootElement, lineNumber);
            }
            catch (JsonException e)
            {
                throw new UserInputException($"{file} line {lineNumber} is not valid JSON ({e.Message}); fix or remove that line.");
            }
            catch (InvalidDataException e)
            {
                throw new UserInputException($"{file} line {lineNumber} {e.Message}; fix or remove that line.");
            }
            if (!ids.Add(question.Id)) throw new UserInputException($"{file} line {lineNumber} repeats the id '{question.Id}'; give every record its own id.");
            questions.Add(question);
        }
        if (questions.Count == 0) throw new UserInputException($"{file} holds no records; give a JSONL file with one question per line.");
        return questions;
    }

    private static DistillationQuestion Gsm8k(JsonElement record, string split, int line)
    {
        var question = Text(record, "question") ?? throw new InvalidDataException("has no \"question\" string");
        var answer = Text(record, "answer") ?? throw new InvalidDataException("has no \"answer\" string");
        if (!answer.Contains("####", StringComparison.Ordinal)) throw new InvalidDataException("has an answer without the final '#### N' of GSM8K");
        return new DistillationQuestion(string.Create(CultureInfo.InvariantCulture, $"{split}-{line:D5}"), question, answer);
    }

    private static DistillationQuestion Generic(JsonElement record, int line)
    {
        if (record.ValueKind != JsonValueKind.Object) throw new InvalidDataException("is not a JSON object");
        var id = record.TryGetProperty("id", out var idElement)
            ? idElement.ValueKind switch
            {
                JsonValueKind.String => idElement.GetString()!,
                JsonValueKind.Number => idElement.GetRawText(),
                _ => throw new InvalidDataException("has an \"id\" that is neither a string nor a number"),
            }
            : line.ToString("D5", CultureInfo.InvariantCulture);
        var question = Text(record, "question");
        if (question is null && Text(record, "premise") is { } premise && Text(record, "hypothesis") is { } hypothesis)
        {
            question = $"Premise: {premise} Hypothesis: {hypothesis}";
        }
        if (question is null) throw new InvalidDataException("has no \"question\" string (or \"premise\" and \"hypothesis\")");
        var answer = record.TryGetProperty("answer", out var answerElement)
            ? answerElement.ValueKind switch
            {
                JsonValueKind.String => answerElement.GetString()!,
                JsonValueKind.Number => answerElement.GetRawText(),
                _ => throw new InvalidDataException("has an \"answer\" that is neither a string nor a number"),
            }
            : throw new InvalidDataException("has no \"answer\"");
        IReadOnlyList<string>? choices = null;
        if (record.TryGetProperty("choices", out var choicesElement) && choicesElement.ValueKind != JsonValueKind.Null)
        {
            if (choicesElement.ValueKind != JsonValueKind.Array || choicesElement.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String))
            {
                throw new InvalidDataException("has \"choices\" that is not an array of strings");
            }
            choices = [.. choicesElement.EnumerateArray().Select(c => c.GetString()!)];
        }
        return new DistillationQuestion(id, question, answer, choices);
    }

    private static string? Text(JsonElement record, string name) =>
        record.ValueKind == JsonValueKind.Object && record.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
