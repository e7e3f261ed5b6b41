using System.Text;
using System.Text.Json;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Training;

/// <summary>One instruction and the response the tuned model should give.</summary>
public sealed record InstructionExample(string Instruction, string Response);

/// <summary>An example as model input: [BOS] prompt response [EOS], of which the first <see cref="PromptLength"/> tokens are BOS and prompt.</summary>
public sealed record TokenizedInstruction(long[] Tokens, int PromptLength);

/// <summary>
/// Instruction tuning: the causal language-model loss on the response tokens only (the prompt is context, not a
/// target), on batches drawn as a pure function of (seed, step), with the pretraining loop's AdamW, schedule, clipping
/// and resumable checkpoints.
/// </summary>
public static class InstructionTuning
{
    /// <summary>The defaults of <c>babel finetune</c>: a short, gentle run on top of a pretrained model.</summary>
    public static PretrainingOptions DefaultOptions { get; } = new()
    {
        Steps = 200, BatchSize = 8, SequenceLength = 256, LearningRate = 1e-3, WarmupFraction = 0.05, CheckpointInterval = 50,
    };

    /// <summary>How many instructions (in file order) the before/after response loss is measured on.</summary>
    public const int EvaluationExamples = 64;

    /// <summary>How an example is laid out, as <c>training.json</c> records it.</summary>
    public const string ExampleFormat = "[BOS] instruction \\n response [EOS]; loss on response tokens and EOS only";

    /// <summary>What a tuned copy keeps of its base model beside the weights: the tokenizer and the expert partition, so it profiles alike.</summary>
    private static readonly string[] _copiedFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", ExpertPartition.FileName];

    /// <summary>The prompt the model sees for <paramref name="instruction"/>; the response follows on the next line.</summary>
    public static string Prompt(string instruction) => instruction + "\n";

    /// <summary>Reads JSONL lines <c>{"instruction": "...", "response": "..."}</c> (other fields are ignored).</summary>
    public static IReadOnlyList<InstructionExample> Read(string path)
    {
        if (!File.Exists(path)) throw new UserInputException($"instructions file {path} does not exist; write one with 'babel data instructions --corpus DIR --out FILE'.");
        var examples = new List<InstructionExample>();
        var number = 0;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var json = JsonDocument.Parse(line);
                var root = json.RootElement;
                if (root.ValueKind != JsonValueKind.Object
                    || !root.TryGetProperty("instruction", out var instruction) || instruction.ValueKind != JsonValueKind.String
                    || !root.TryGetProperty("response", out var response) || response.ValueKind != JsonValueKind.String
                    || string.IsNullOrEmpty(response.GetString()))
                {
                    throw new UserInputException($"{path} line {number} lacks a string \"instruction\" or a non-empty \"response\"; each line must be {{\"instruction\": \"...\", \"response\": \"...\"}}.");
                }
                examples.Add(new InstructionExample(instruction.GetString()!, response.GetString()!));
            }
            catch (JsonException e)
            {
                throw new UserInputException($"{path} line {number} is not valid JSON ({e.Message}); each line must be {{\"instruction\": \"...\", \"response\": \"...\"}}.", e);
            }
        }
        if (examples.Count == 0) throw new UserInputException($"{path} holds no instructions; write one with 'babel data instructions --corpus DIR --out FILE'.");
        return examples;
    }

    /// <summary>[BOS] prompt response [EOS], prompt and response encoded apart so their boundary is exact.</summary>
    public static TokenizedInstruction Tokenize(ITokenizer tokenizer, InstructionExample example)
    {
        long[] prompt = [tokenizer.BosId, .. tokenizer.Encode(Prompt(example.Instruction)).Select(i => (long)i)];
        return new TokenizedInstruction([.. prompt, .. tokenizer.Encode(example.Response).Select(i => (long)i), tokenizer.EosId], prompt.Length);
    }

    /// <summary>
    /// Inputs [batch, width] right-padded with <paramref name="padId"/>, and targets with the next token where it is a
    /// response token (or the final EOS) and <see cref="Pretrainer.IgnoreIndex"/> over the prompt and the padding.
    /// </summary>
    public static (Tensor Inputs, Tensor Targets) Batch(IReadOnlyList<TokenizedInstruction> examples, long padId)
    {
        var width = examples.Max(e => e.Tokens.Length) - 1;
        var inputs = new long[examples.Count * width];
        var targets = new long[examples.Count * width];
        Array.Fill(inputs, padId);
        Array.Fill(targets, Pretrainer.IgnoreIndex);
        for (var row = 0; row < examples.Count; row++)
        {
            var tokens = examples[row].Tokens;
            for (var t = 0; t < tokens.Length - 1; t++)
            {
                inputs[row * width + t] = tokens[t];
                // Position t predicts token t + 1: a target only when that token belongs to the response.
                if (t + 1 >= examples[row].PromptLength) targets[row * width + t] = tokens[t + 1];
            }
        }
        return (tensor(inputs, [examples.Count, width]), tensor(targets, [examples.Count, width]));
    }

    /// <summary>The example indices of <paramref name="step"/>: a pure function of (seed, step), so a resumed run sees the same batches.</summary>
    public static int[] BatchIndices(int count, long seed, int step, int batchSize)
    {
        var random = new Random(unchecked((int)TokenStream.SplitMix64((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step)));
        return [.. Enumerable.Range(0, batchSize).Select(_ => random.Next(count))];
    }

    /// <summary>
    /// Tunes <paramref name="model"/> on <paramref name="examples"/> (each at most <see cref="PretrainingOptions.SequenceLength"/>
    /// + 1 tokens long); returns the per-step response losses. With <paramref name="historyDirectory"/>, writes the
    /// per-step <see cref="TrainingHistory"/> there.
    /// </summary>
    public static IReadOnlyList<double> Train(CausalLanguageModel model, IReadOnlyList<TokenizedInstruction> examples, long padId, PretrainingOptions options,
        string checkpointDirectory, string dataFingerprint, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default,
        string? historyDirectory = null)
    {
        if (examples.Count == 0) throw new UserInputException("no instruction fits the sequence length; raise --sequence-length or use shorter instructions.");
        return Pretrainer.Train(model, step => Batch([.. BatchIndices(examples.Count, options.Seed, step, options.BatchSize).Select(i => examples[i])], padId),
            options, checkpointDirectory, progress, cancellationToken, dataFingerprint, historyDirectory);
    }

    /// <summary>
    /// Instruction-tunes <paramref name="modelDirectory"/> on translation instructions built from <paramref name="corpus"/>'s
    /// train documents (from English, or the first language, into every other language of <paramref name="languages"/>),
    /// written beside <paramref name="outputDirectory"/> as <c>instructions.jsonl</c>: the base-vs-instruct study's model.
    /// </summary>
    public static InstructionTuningManifest TuneOnTranslations(string modelDirectory, Storage.Corpora.Corpus corpus, IReadOnlyList<string> languages, string outputDirectory,
        PretrainingOptions options, IProgress<TrainingProgress>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        var source = corpus.Manifest.FindLanguage("eng") is not null ? "eng" : corpus.Manifest.Languages[0].Code;
        var instructions = Storage.Corpora.TranslationInstructions.Build(corpus, source, [.. languages.Where(c => c != source)]);
        var path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outputDirectory))!, "instructions.jsonl");
        Storage.Corpora.TranslationInstructions.Write(path, instructions);
        return Tune(modelDirectory, path, outputDirectory, options, progress, log, cancellationToken);
    }

    /// <summary>
    /// <c>babel finetune</c>: tunes a copy of the model in <paramref name="modelDirectory"/> (all weights, seeded by
    /// <see cref="PretrainingOptions.Seed"/>) on the instructions that fit the sequence length, into
    /// <paramref name="outputDirectory"/>: the Hugging Face layout, the base model's tokenizer and <c>experts.json</c>, the
    /// per-step history and <c>training.json</c> last. A rerun resumes from the checkpoint. Returns what <c>training.json</c> holds.
    /// </summary>
    public static InstructionTuningManifest Tune(string modelDirectory, string instructionsPath, string outputDirectory, PretrainingOptions options,
        IProgress<TrainingProgress>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (Path.GetFullPath(modelDirectory).TrimEnd('/') == Path.GetFullPath(outputDirectory).TrimEnd('/'))
        {
            throw new UserInputException("--out is the model folder itself; give another folder so the base model stays as it is.");
        }
        using var run = InstructionTuningRun.Open(modelDirectory, instructionsPath, options);
        log?.Invoke(run.Describe(options));

        TorchRuntime.Initialize(options.Threads);
        using var network = run.NewModel(options.Seed);
        var before = ResponseLoss(network, run.Evaluation, run.Tokenizer.PadId);
        Directory.CreateDirectory(outputDirectory);
        var checkpoint = Path.Combine(outputDirectory, TrainingManifest.CheckpointFolderName);
        var losses = Train(network, run.Fitting, run.Tokenizer.PadId, options, checkpoint, run.Sha256 + "|" + Path.GetFullPath(modelDirectory), progress, cancellationToken, outputDirectory);
        return Finish(run, network, options, losses, before, outputDirectory, Path.GetFullPath(modelDirectory), Path.GetFullPath(instructionsPath));
    }

    /// <summary>
    /// Completes a tuned model folder: the response loss after tuning, the weights, the base model's tokenizer and
    /// <c>experts.json</c>, <c>training.json</c> last (naming <paramref name="baseModel"/> and <paramref name="instructions"/>),
    /// and the resumable checkpoint removed.
    /// </summary>
    public static InstructionTuningManifest Finish(InstructionTuningRun run, CausalLanguageModel network, PretrainingOptions options, IReadOnlyList<double> losses,
        double before, string outputDirectory, string baseModel, string instructions)
    {
        var after = ResponseLoss(network, run.Evaluation, run.Tokenizer.PadId);
        ModelCheckpoint.Save(outputDirectory, run.Config, network.StateDict());
        PretrainingWorkflow.CopyFiles(run.ModelDirectory, outputDirectory, _copiedFiles);
        var manifest = new InstructionTuningManifest(InstructionTuningManifest.KindName, baseModel, run.Config, options.Seed, options,
            new InstructionData(instructions, run.Sha256, run.Examples, run.Fitting.Count, run.Examples - run.Fitting.Count, ExampleFormat),
            losses.Count, TrainingManifest.FinalLoss(losses),
            new ResponseLossComparison(run.Evaluation.Count, $"mean loss per response token on the first {run.Evaluation.Count} usable instructions, before and after tuning", before, after));
        TrainingManifest.Save(outputDirectory, manifest);
        var checkpoint = Path.Combine(outputDirectory, TrainingManifest.CheckpointFolderName);
        if (Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
        return manifest;
    }

    /// <summary>Mean loss per response token over <paramref name="examples"/> (no gradient).</summary>
    public static double ResponseLoss(CausalLanguageModel model, IReadOnlyList<TokenizedInstruction> examples, long padId, int batchSize = 8)
    {
        double total = 0;
        long tokens = 0;
        using var guard = no_grad();
        foreach (var chunk in examples.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = Batch(chunk, padId);
            var count = targets.ne(Pretrainer.IgnoreIndex).sum().item<long>();
            total += Pretrainer.Loss(model.Forward(inputs), targets).item<float>() * count;
            tokens += count;
        }
        return tokens == 0 ? double.NaN : total / tokens;
    }
}
