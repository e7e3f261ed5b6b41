using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel finetune</c>: instruction-tunes a copy of a model (all weights, from its checkpoint) with the loss on response
/// tokens only; the copy keeps the tokenizer and experts.json, so it can be profiled with the same partition.
/// </summary>
internal static class FinetuneCommand
{
    /// <summary>How many instructions (in file order) the before/after response loss is measured on.</summary>
    public const int EvaluationExamples = 64;

    /// <summary>Where <see cref="TuneProfileAndCompareAsync"/> writes the base-vs-instruct comparison inside the base run.</summary>
    public const string InstructComparisonFolder = "instruct-comparison";

    private static readonly string[] _copiedFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", ExpertPartition.FileName];

    public static Command Create()
    {
        var defaults = InstructionTuning.DefaultOptions;
        var model = new Option<string>("--model") { Description = "Model folder to start from (Hugging Face layout with tokenizer.json).", Required = true };
        var instructions = new Option<string>("--instructions") { Description = "JSONL file of {\"instruction\": ..., \"response\": ...} (see 'babel data instructions').", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for the tuned model (Hugging Face layout + training.json); a rerun resumes from its checkpoint.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => defaults.Steps };
        var seed = new Option<long>("--seed") { Description = "Seed of the batch order (recorded in training.json).", DefaultValueFactory = _ => defaults.Seed };
        var learningRate = new Option<double>("--learning-rate") { Description = "Peak AdamW learning rate (linear warmup, cosine decay).", DefaultValueFactory = _ => defaults.LearningRate };
        var batch = new Option<int>("--batch-size") { Description = "Instructions per step.", DefaultValueFactory = _ => defaults.BatchSize };
        var length = new Option<int>("--sequence-length") { Description = "Longest example in tokens (BOS + prompt + response); longer ones are left out.", DefaultValueFactory = _ => defaults.SequenceLength };
        var threads = new Option<int>("--threads") { Description = "Torch threads.", DefaultValueFactory = _ => defaults.Threads };
        var command = new Command("finetune", "Instruction-tune a copy of a model: loss on response tokens only, AdamW, resumable; keeps tokenizer.json and experts.json.")
        {
            model, instructions, output, steps, seed, learningRate, batch, length, threads,
        };
        command.SetAction(parse =>
        {
            var options = defaults with
            {
                Steps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
                LearningRate = parse.GetValue(learningRate),
                BatchSize = parse.GetValue(batch),
                SequenceLength = parse.GetValue(length),
                Threads = parse.GetValue(threads),
            };
            Run(parse.GetValue(model)!, parse.GetValue(instructions)!, parse.GetValue(output)!, options, CommandConsole.For(parse.InvocationConfiguration.Output));
            return 0;
        });
        return command;
    }

    /// <summary>Tunes the model in <paramref name="modelDirectory"/> into <paramref name="outputDirectory"/>; returns the response loss before and after.</summary>
    public static (double Before, double After) Run(string modelDirectory, string instructionsPath, string outputDirectory, PretrainingOptions options, IAnsiConsole console)
    {
        options.Validate();
        if (Path.GetFullPath(modelDirectory).TrimEnd('/') == Path.GetFullPath(outputDirectory).TrimEnd('/'))
        {
            throw new UserInputException("--out is the model folder itself; give another folder so the base model stays as it is.");
        }
        var config = ModelCheckpoint.Validate(modelDirectory);
        var examples = InstructionTuning.Read(instructionsPath);
        using var tokenizer = HuggingFaceTokenizer.Load(modelDirectory);
        var maximum = Math.Min(options.SequenceLength, config.MaxPositionEmbeddings) + 1;
        var tokenized = examples.Select(e => InstructionTuning.Tokenize(tokenizer, e)).ToList();
        var fitting = tokenized.Where(t => t.Tokens.Length <= maximum).ToList();
        if (fitting.Count == 0)
        {
            throw new UserInputException($"none of the {examples.Count} instructions fits in {maximum - 1} tokens; raise --sequence-length (the model allows {config.MaxPositionEmbeddings}) or use shorter instructions.");
        }
        var evaluation = fitting.Take(EvaluationExamples).ToList();
        var fingerprint = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(instructionsPath))) + "|" + Path.GetFullPath(modelDirectory);
        console.MarkupLineInterpolated($"instruction-tuning {ModelWorkflows.Describe(config)} on {fitting.Count} of {examples.Count} instructions ({examples.Count - fitting.Count} longer than {maximum - 1} tokens left out), {options.Steps} steps of {options.BatchSize}, seed {options.Seed}");

        Modeling.Runtime.TorchRuntime.Initialize(options.Threads);
        TorchSharp.torch.random.manual_seed(options.Seed);
        using var network = CausalLanguageModel.Load(modelDirectory);
        var padId = tokenizer.PadId;
        var before = InstructionTuning.ResponseLoss(network, evaluation, padId);
        Directory.CreateDirectory(outputDirectory);
        var checkpoint = Path.Combine(outputDirectory, ModelWorkflows.CheckpointFolderName);
        IReadOnlyList<double> losses = [];
        console.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("instruction tuning", maxValue: options.Steps);
                var progress = new InlineProgress(p =>
                {
                    task.Value = p.Step;
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.Steps} response loss {p.Loss:F3} lr {p.LearningRate:E1}{(p.Resumed ? " (resumed)" : "")}");
                });
                losses = InstructionTuning.Train(network, fitting, padId, options, checkpoint, fingerprint, progress);
            });
        var after = InstructionTuning.ResponseLoss(network, evaluation, padId);

        ModelCheckpoint.Save(outputDirectory, config, network.StateDict());
        foreach (var name in _copiedFiles)
        {
            var source = Path.Combine(modelDirectory, name);
            if (File.Exists(source)) AtomicFile.WriteAllBytes(Path.Combine(outputDirectory, name), File.ReadAllBytes(source));
        }
        var finalLoss = losses.Skip(Math.Max(0, losses.Count - 20)).DefaultIfEmpty(double.NaN).Average();
        var manifest = new JsonObject
        {
            ["kind"] = "instruction-tuning",
            ["baseModel"] = Path.GetFullPath(modelDirectory),
            ["config"] = config.ToJson(),
            ["seed"] = options.Seed,
            ["options"] = JsonSerializer.SerializeToNode(options),
            ["data"] = new JsonObject
            {
                ["instructions"] = Path.GetFullPath(instructionsPath),
                ["sha256"] = fingerprint.Split('|')[0],
                ["examples"] = examples.Count,
                ["used"] = fitting.Count,
                ["leftOutTooLong"] = examples.Count - fitting.Count,
                ["format"] = "[BOS] instruction \\n response [EOS]; loss on response tokens and EOS only",
            },
            ["steps"] = losses.Count,
            ["finalTrainLoss"] = finalLoss,
            ["responseLoss"] = new JsonObject
            {
                ["examples"] = evaluation.Count,
                ["what"] = $"mean loss per response token on the first {evaluation.Count} usable instructions, before and after tuning",
                ["before"] = before,
                ["after"] = after,
            },
        };
        // training.json goes last: its presence marks a finished model folder.
        AtomicFile.WriteAllText(Path.Combine(outputDirectory, ModelWorkflows.TrainingManifestName), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        if (Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
        console.MarkupLineInterpolated($"response loss on {evaluation.Count} instructions: {before:F3} before, {after:F3} after; tuned model written to {Path.GetFullPath(outputDirectory)}");
        return (before, after);
    }

    /// <summary>
    /// The base-vs-instruct study in one call (for the quickstart): translation instructions from the corpus's train
    /// documents → an instruction-tuned copy of <paramref name="modelDirectory"/> in <paramref name="tunedDirectory"/>
    /// (reused when its training.json exists) → a profile of the copy with the same partition and rule into
    /// <paramref name="tunedRun"/> → the comparison with <paramref name="baseRun"/> (B = tuned, A = base), written
    /// in <paramref name="baseRun"/>/instruct-comparison/, which the base run's report.html shows.
    /// </summary>
    public static async Task<IReadOnlyList<Modeling.Analysis.AnalysisFinding>> TuneProfileAndCompareAsync(EngineConnection engine, string modelDirectory,
        Storage.Corpora.Corpus corpus, ExpertPartition partition, Grains.Experts.ProfileJobParameters profile, string baseRun, string tunedDirectory, string tunedRun,
        PretrainingOptions options, IAnsiConsole console, TextWriter progress, CancellationToken cancellationToken)
    {
        if (!File.Exists(Path.Combine(tunedDirectory, ModelWorkflows.TrainingManifestName)))
        {
            var source = corpus.Manifest.FindLanguage("eng") is not null ? "eng" : corpus.Manifest.Languages[0].Code;
            var instructions = Storage.Corpora.TranslationInstructions.Build(corpus, source, [.. profile.Languages.Where(c => c != source)]);
            var instructionsPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tunedDirectory))!, "instructions.jsonl");
            Storage.Corpora.TranslationInstructions.Write(instructionsPath, instructions);
            Run(modelDirectory, instructionsPath, tunedDirectory, options, console);
        }
        console.WriteLine((await Grains.Experts.ExpertsWorkflows.ProfileAsync(engine.Jobs, tunedDirectory, corpus.Directory, profile, tunedRun, null, cancellationToken)).Summary());
        var comparison = Modeling.Analysis.ProfileRunAnalysis.Compare(baseRun, tunedRun, Path.Combine(baseRun, InstructComparisonFolder));
        foreach (var line in comparison.Lines()) console.WriteLine(line);
        return comparison.Findings;
    }

    /// <summary>Reports synchronously on the training thread.</summary>
    private sealed class InlineProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
