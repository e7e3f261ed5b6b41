using System.Text;
using System.Text.RegularExpressions;
using Babel.Client;
using Babel.Modeling.Experts;
using Babel.Storage.Artifacts;
using Babel.UnitTests.Jobs;
using Xunit;
using Xunit.Abstractions;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Fuzz;

/// <summary>
/// Every file format the CLI reads, damaged the ways files get damaged (truncated, emptied, bytes flipped, a value of
/// the wrong type, a huge or negative number), read by a command that needs it: the command either still succeeds
/// (the damage left a valid file) or exits 2 with one sentence on stderr and no stack trace, and leaves no output behind.
/// </summary>
public sealed class InputFuzzTests(ITestOutputHelper log)
{
    /// <summary>A file of the inputs, the command that reads it, and where that command writes (null: it prints only).</summary>
    public sealed record Case(string File, Func<Inputs, string[]> Command, bool WritesOut);

    public static readonly TheoryData<string> Files = new()
    {
        "model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/experts.json",
        "run/activations.json", "run/manifest.json", "corpus/corpus.json", "corpus/eng.jsonl", "codes/notes.jsonl", "codes/tree.tsv",
    };

    private static readonly Dictionary<string, Case> _cases = new()
    {
        ["model/config.json"] = new("model/config.json", i => ["generate", "--model", i.Model, "--prompt", "the cat", "--max-new-tokens", "2"], false),
        ["model/model.safetensors"] = new("model/model.safetensors", i => ["generate", "--model", i.Model, "--prompt", "the cat", "--max-new-tokens", "2"], false),
        ["model/tokenizer.json"] = new("model/tokenizer.json", i => ["generate", "--model", i.Model, "--prompt", "the cat", "--max-new-tokens", "2"], false),
        ["model/experts.json"] = new("model/experts.json", i => ["prune", "--model", i.Model, "--run", i.Run, "--language", "eng", "--rate", "0.5", "--out", i.Out], true),
        ["run/activations.json"] = new("run/activations.json", i => ["report", "--run", i.Run], false),
        ["run/manifest.json"] = new("run/manifest.json", i => ["report", "--run", i.Run], false),
        ["corpus/corpus.json"] = new("corpus/corpus.json", i => ["tokenizer", "train", "--corpus", i.Corpus, "--vocab-size", "300", "--out", i.Out], true),
        ["corpus/eng.jsonl"] = new("corpus/eng.jsonl", i => ["tokenizer", "train", "--corpus", i.Corpus, "--vocab-size", "300", "--out", i.Out], true),
        ["codes/notes.jsonl"] = new("codes/notes.jsonl", Codes, true),
        ["codes/tree.tsv"] = new("codes/tree.tsv", Codes, true),
    };

    private static string[] Codes(Inputs i) =>
        ["data", "codes", "--input", Path.Combine(i.Codes, "notes.jsonl"), "--tree", Path.Combine(i.Codes, "tree.tsv"), "--scheme", "icd10", "--out", i.Out];

    /// <summary>The valid inputs: a tiny model with tokenizer and experts, a corpus, and a profile run of that model.</summary>
    public sealed record Inputs(string Model, string Corpus, string Run, string Out, string Codes);

    [Theory]
    [MemberData(nameof(Files))]
    public async Task A_damaged_file_is_one_sentence_and_exit_2_never_a_crash_or_a_half_written_output(string file)
    {
        var @case = _cases[file];
        using var scratch = new ScratchFolder();
        var inputs = await WriteInputsAsync(scratch);
        var path = Path.Combine(scratch.Path, @case.File);
        var original = await File.ReadAllBytesAsync(path);

        var baseline = Run(@case.Command(inputs));
        Assert.True(baseline.Code == 0, $"the undamaged input must work: {baseline.Error}");
        var rejected = 0;
        foreach (var (name, damaged, mustFail) in Mutations(original, path.EndsWith(".safetensors", StringComparison.Ordinal), path.EndsWith(".jsonl", StringComparison.Ordinal)))
        {
            if (Directory.Exists(inputs.Out)) Directory.Delete(inputs.Out, recursive: true);
            await File.WriteAllBytesAsync(path, damaged);
            var (code, output, error) = Run(@case.Command(inputs));
            log.WriteLine($"{file} {name}: exit {code} {error.Trim()}");
            Assert.True(code is 0 or BabelCli.InputErrorExitCode, $"{file} {name}: exit {code}\n{error}");
            if (mustFail) Assert.True(code == BabelCli.InputErrorExitCode, $"{file} {name} was accepted:\n{output}");
            if (code == 0) continue;
            rejected++;
            var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"{file} {name}: not one sentence:\n{error}");
            Assert.DoesNotMatch(new Regex(@"\bat [A-Z][\w.]+\(|Exception:"), error);
            Assert.Equal("", output);
            if (@case.WritesOut) Assert.False(Directory.Exists(inputs.Out) && Directory.EnumerateFileSystemEntries(inputs.Out).Any(), $"{file} {name}: output left in {inputs.Out}");
        }
        Assert.True(rejected >= 3, $"only {rejected} damaged versions of {file} were rejected");
        await File.WriteAllBytesAsync(path, original);
    }

    public static readonly TheoryData<string> DistillationFiles = new()
    {
        "manifest.json", "cots.jsonl", "evaluations.jsonl", "questions/test.jsonl",
    };

    /// <summary>
    /// The distillation folder a student trains on, damaged file by file, read the way <c>babel distill train</c> reads it
    /// (its training would take too long for every damaged version): one <see cref="Storage.UserInputException"/>
    /// sentence, which the CLI's edge turns into exit 2, or a folder that is still valid.
    /// </summary>
    [Theory]
    [MemberData(nameof(DistillationFiles))]
    public void A_damaged_distillation_folder_file_is_one_sentence(string file)
    {
        using var scratch = new ScratchFolder();
        var folder = scratch.Combine("data");
        Modeling.Distillation.ArithmeticWordProblems.Write(folder, new Modeling.Distillation.ArithmeticProblemOptions { TrainQuestions = 12, TestQuestions = 4 });
        var path = Path.Combine(folder, file);
        var original = File.ReadAllBytes(path);
        Modeling.Distillation.StudentCorpus.Load(folder);
        var rejected = 0;
        foreach (var (name, damaged, mustFail) in Mutations(original, binary: false, lines: file.EndsWith(".jsonl", StringComparison.Ordinal)))
        {
            File.WriteAllBytes(path, damaged);
            var error = Record.Exception(() => Modeling.Distillation.StudentCorpus.Load(folder));
            log.WriteLine($"{file} {name}: {error?.GetType().Name ?? "accepted"} {error?.Message}");
            if (error is null)
            {
                Assert.False(mustFail, $"{file} {name} was accepted");
                continue;
            }
            rejected++;
            Assert.True(error is Storage.UserInputException, $"{file} {name}: {error}");
            Assert.DoesNotContain('\n', error.Message);
        }
        Assert.True(rejected >= 3, $"only {rejected} damaged versions of {file} were rejected");
    }

    /// <summary>The damaged versions of a file, and whether each can never be a valid file.</summary>
    private static IEnumerable<(string Name, byte[] Bytes, bool MustFail)> Mutations(byte[] original, bool binary, bool lines)
    {
        // An empty JSON Lines file is a valid file of no records.
        yield return ("emptied", [], !lines);
        yield return ("truncated", original[..(original.Length / 2)], !lines);
        var flipped = (byte[])original.Clone();
        var random = new Random(original.Length);
        for (var i = 0; i < 3; i++) flipped[random.Next(flipped.Length)] ^= 0xA5;
        yield return ("flipped", flipped, false);
        if (binary)
        {
            // A safetensors file starts with its header's length (little-endian u64): claim far more than the file holds.
            var huge = (byte[])original.Clone();
            BitConverter.GetBytes(long.MaxValue / 3).CopyTo(huge, 0);
            yield return ("huge header length", huge, true);
            var header = (byte[])original.Clone();
            var length = (int)BitConverter.ToInt64(original, 0);
            header[8 + length / 2] = (byte)'{';
            yield return ("broken header", header, true);
            yield break;
        }
        var text = Encoding.UTF8.GetString(original);
        var number = new Regex(@"(?<=[:\[,]\s*)-?\d+(\.\d+)?([eE][+-]?\d+)?");
        yield return ("number as string", Encoding.UTF8.GetBytes(number.Replace(text, "\"x\"", 1)), false);
        yield return ("huge number", Encoding.UTF8.GetBytes(number.Replace(text, "1e999", 1)), false);
        yield return ("negative number", Encoding.UTF8.GetBytes(number.Replace(text, "-99999999999", 1)), false);
        var stringValue = new Regex(@"(?<=:\s*)""[^""]*""");
        yield return ("string as object", Encoding.UTF8.GetBytes(stringValue.Replace(text, "{\"a\":[1]}", 1)), false);
        yield return ("invalid UTF-8", [.. original.Take(original.Length / 3), 0xC3, 0x28, .. original.Skip(original.Length / 3)], false);
    }

    private static async Task<Inputs> WriteInputsAsync(ScratchFolder scratch)
    {
        var (model, corpus) = JobTestInputs.Write(scratch);
        var config = Modeling.Checkpoints.ModelCheckpoint.Validate(model);
        var partition = ExpertPartition.Contiguous(config.NumHiddenLayers, config.IntermediateSize, 4);
        partition.Save(model);
        var key = "models/" + await ArtifactFolders.ComputeContentHashAsync(model, CancellationToken.None);
        var run = scratch.Combine("run");
        Directory.CreateDirectory(run);
        var languages = new SortedDictionary<string, LanguageActivations>(StringComparer.Ordinal)
        {
            ["eng"] = new(100, [.. Enumerable.Range(0, config.NumHiddenLayers).Select(l => new long[] { 10 + l, 20, 30, 140 - l })]),
            ["fra"] = new(100, [.. Enumerable.Range(0, config.NumHiddenLayers).Select(l => new long[] { 40, 30 + l, 20, 110 - l })]),
        };
        new ActivationProfile(key, config.NumHiddenLayers, 4, "topk:2", languages).Save(run);
        File.WriteAllText(Path.Combine(run, "manifest.json"),
            $"{{\"model\": \"{key}\", \"corpus_name\": \"t\", \"corpus_folder\": \"{corpus}\", \"split\": \"all\", \"tokens\": 200, \"wall_seconds\": 1.5}}\n");
        var codes = scratch.Combine("codes");
        Directory.CreateDirectory(codes);
        File.WriteAllLines(Path.Combine(codes, "notes.jsonl"),
        [
            """{"text": "Bluthochdruck seit Jahren", "labels": ["I10"]}""",
            """{"id": "n2", "text": "Asthma bronchiale", "labels": ["J45.9"], "weight": 1}""",
            """{"text": "Asthma und Hochdruck", "labels": ["J45.9", "I10"]}""",
        ]);
        File.WriteAllLines(Path.Combine(codes, "tree.tsv"), ["# code<TAB>description", "I10\tessential hypertension", "J45.9\tasthma, unspecified"]);
        return new Inputs(model, corpus, run, scratch.Combine("out"), codes);
    }
}
