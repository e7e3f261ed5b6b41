using System.Globalization;
using System.Security.Cryptography;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Training;

/// <summary>
/// What an instruction-tuning run trains on, read once: the base model's folder and configuration, its tokenizer, the
/// instructions (all, those that fit the sequence length, and the first ones the response loss is measured on) and
/// their SHA-256. Every rank of a data-parallel run opens the same one.
/// </summary>
public sealed class InstructionTuningRun : IDisposable
{
    private InstructionTuningRun(string modelDirectory, ModelConfig config, HuggingFaceTokenizer tokenizer, int examples, IReadOnlyList<TokenizedInstruction> fitting,
        int maximum, string sha256)
    {
        ModelDirectory = modelDirectory;
        Config = config;
        Tokenizer = tokenizer;
        Examples = examples;
        Fitting = fitting;
        Evaluation = [.. fitting.Take(InstructionTuning.EvaluationExamples)];
        Maximum = maximum;
        Sha256 = sha256;
    }

    public string ModelDirectory { get; }
    public ModelConfig Config { get; }
    public HuggingFaceTokenizer Tokenizer { get; }
    /// <summary>Instructions in the file.</summary>
    public int Examples { get; }
    /// <summary>The tokenised instructions that fit <see cref="Maximum"/> tokens, in file order.</summary>
    public IReadOnlyList<TokenizedInstruction> Fitting { get; }
    public IReadOnlyList<TokenizedInstruction> Evaluation { get; }
    public int Maximum { get; }
    public string Sha256 { get; }

    /// <summary>Reads and tokenises the instructions for the model in <paramref name="modelDirectory"/>; none fitting is one sentence.</summary>
    public static InstructionTuningRun Open(string modelDirectory, string instructionsPath, PretrainingOptions options)
    {
        var config = ModelCheckpoint.Validate(modelDirectory);
        var examples = InstructionTuning.Read(instructionsPath);
        var tokenizer = HuggingFaceTokenizer.Load(modelDirectory);
        var maximum = Math.Min(options.SequenceLength, config.MaxPositionEmbeddings) + 1;
        var fitting = examples.Select(e => InstructionTuning.Tokenize(tokenizer, e)).Where(t => t.Tokens.Length <= maximum).ToList();
        if (fitting.Count == 0)
        {
            tokenizer.Dispose();
            throw new UserInputException($"none of the {examples.Count} instructions fits in {maximum - 1} tokens; raise --sequence-length (the model allows {config.MaxPositionEmbeddings}) or use shorter instructions.");
        }
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(instructionsPath)));
        return new InstructionTuningRun(modelDirectory, config, tokenizer, examples.Count, fitting, maximum, sha256);
    }

    /// <summary>The base model, loaded after seeding with <paramref name="seed"/>: the same on every rank.</summary>
    public CausalLanguageModel NewModel(long seed)
    {
        random.manual_seed(seed);
        return CausalLanguageModel.Load(ModelDirectory);
    }

    /// <summary>"instruction-tuning d=128, … on 120 of 130 instructions (10 longer than 256 tokens left out), 200 steps of 8, seed 1".</summary>
    public string Describe(PretrainingOptions options) => string.Create(CultureInfo.InvariantCulture,
        $"instruction-tuning {PretrainingWorkflow.Describe(Config)} on {Fitting.Count} of {Examples} instructions ({Examples - Fitting.Count} longer than {Maximum - 1} tokens left out), {options.Steps} steps of {options.BatchSize}, seed {options.Seed}");

    public void Dispose() => Tokenizer.Dispose();
}
