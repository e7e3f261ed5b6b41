using Babel.Modeling.Checkpoints;
using Babel.Storage;

namespace Babel.Modeling.Training;

/// <summary>Hyper-parameters of causal language-model pretraining; every value is recorded in <c>training.json</c>.</summary>
public sealed record PretrainingOptions
{
    public int Steps { get; init; } = 600;
    public int BatchSize { get; init; } = 16;
    public int SequenceLength { get; init; } = 128;
    public double LearningRate { get; init; } = 3e-3;
    public double MinLearningRateRatio { get; init; } = 0.1;
    public double WarmupFraction { get; init; } = 0.05;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double GradientClip { get; init; } = 1.0;
    public long Seed { get; init; } = 1;
    /// <summary>Steps between resumable checkpoints.</summary>
    public int CheckpointInterval { get; init; } = 100;
    public int Threads { get; init; } = 2;

    /// <summary>
    /// Data-parallel runs only: local steps between synchronisations (1: every step sums gradients, the exact synchronous
    /// mode; H &gt; 1: DiLoCo, every rank takes H AdamW steps on its own micro-batches, then the ranks average their weights
    /// through the outer optimizer).
    /// </summary>
    public int SyncEvery { get; init; } = 1;

    /// <summary>DiLoCo's outer learning rate (Douillard et al. 2023: 0.7).</summary>
    public double OuterLearningRate { get; init; } = 0.7;

    /// <summary>DiLoCo's outer Nesterov momentum (Douillard et al. 2023: 0.9).</summary>
    public double OuterMomentum { get; init; } = 0.9;

    public PretrainingOptions Validate()
    {
        if (Steps <= 0) throw new UserInputException($"--steps must be positive (got {Steps}).");
        if (BatchSize <= 0 || SequenceLength < 2) throw new UserInputException("The batch size must be positive and the sequence length at least 2.");
        if (!(LearningRate > 0)) throw new UserInputException($"The learning rate must be positive (got {LearningRate}).");
        if (CheckpointInterval <= 0) throw new UserInputException($"The checkpoint interval must be positive (got {CheckpointInterval}).");
        if (SyncEvery < 1) throw new UserInputException($"--sync-every must be at least 1 (got {SyncEvery}).");
        if (!(OuterLearningRate > 0)) throw new UserInputException($"--outer-lr must be positive (got {OuterLearningRate}).");
        if (!(OuterMomentum >= 0 && OuterMomentum < 1)) throw new UserInputException($"--outer-momentum must be in [0, 1) (got {OuterMomentum}).");
        return this;
    }

    /// <summary>Whether the ranks synchronise after step <paramref name="done"/> (1-based): every <see cref="SyncEvery"/> steps and after the last.</summary>
    public bool IsSyncStep(int done) => done % SyncEvery == 0 || done == Steps;

    /// <summary>
    /// Whether a checkpoint is written after step <paramref name="done"/> (1-based): at the first synchronisation at or after
    /// every multiple of <see cref="CheckpointInterval"/>, and after the last step. Between synchronisations the replicas
    /// differ, so a checkpoint is only taken where they agree.
    /// </summary>
    public bool IsCheckpointStep(int done)
    {
        if (!IsSyncStep(done)) return false;
        if (done == Steps) return true;
        // Here done is a multiple of SyncEvery: a multiple of the interval lies in (done - SyncEvery, done].
        return done / CheckpointInterval > (done - SyncEvery) / CheckpointInterval;
    }

    /// <summary>Every step after which a checkpoint is written, in order.</summary>
    public IEnumerable<int> CheckpointSteps() => Enumerable.Range(1, Steps).Where(IsCheckpointStep);

    /// <summary>Learning rate at <paramref name="step"/> (0-based): linear warmup, then cosine decay to <see cref="MinLearningRateRatio"/> of the peak.</summary>
    public double LearningRateAt(int step)
    {
        var warmup = Math.Max(1, (int)Math.Round(WarmupFraction * Steps));
        if (step < warmup) return LearningRate * (step + 1) / warmup;
        var progress = Math.Min(1.0, (step - warmup) / (double)Math.Max(1, Steps - warmup));
        var minimum = LearningRate * MinLearningRateRatio;
        return minimum + 0.5 * (LearningRate - minimum) * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>Named model sizes for <c>babel pretrain --config</c>.</summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["micro", "tiny", "small"];

    public static ModelConfig Create(string name, int vocabSize, int bosId, int eosId, int padId) => name switch
    {
        // A student that learns a small task in minutes on a laptop's CPU.
        "micro" => new ModelConfig
        {
            HiddenSize = 96, IntermediateSize = 256, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 24,
            VocabSize = vocabSize, MaxPositionEmbeddings = 512, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
            BosTokenId = bosId, EosTokenId = eosId, PadTokenId = padId,
        },
        "tiny" => new ModelConfig
        {
            HiddenSize = 128, IntermediateSize = 384, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 32,
            VocabSize = vocabSize, MaxPositionEmbeddings = 512, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
            BosTokenId = bosId, EosTokenId = eosId, PadTokenId = padId,
        },
        "small" => new ModelConfig
        {
            HiddenSize = 256, IntermediateSize = 768, NumHiddenLayers = 6, NumAttentionHeads = 8, NumKeyValueHeads = 4, HeadDim = 32,
            VocabSize = vocabSize, MaxPositionEmbeddings = 1024, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
            BosTokenId = bosId, EosTokenId = eosId, PadTokenId = padId,
        },
        _ => throw new UserInputException($"Unknown model preset '{name}'; use one of: {string.Join(", ", Names)}."),
    };

    /// <summary>Default tokenizer vocabulary size of each preset.</summary>
    public static int VocabSize(string name) => name switch { "small" => 8192, "micro" => 1024, _ => 4096 };
}
