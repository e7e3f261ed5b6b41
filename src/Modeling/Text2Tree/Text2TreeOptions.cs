using System.Text.Json.Serialization;
using Babel.Storage;

namespace Babel.Modeling.Text2Tree;

/// <summary>Training methods: Text2Tree and the baselines on the same encoder.</summary>
public static class Text2TreeMethods
{
    /// <summary>Text2Tree: (1 − λ)·L_DML + λ·L_SSL. At λ = 0 it is the paper's "DML only" ablation on the same head.</summary>
    public const string Text2Tree = "text2tree";
    /// <summary>
    /// The paper's "SSL only" ablation: (1 − λ)·L_CE + λ·L_SSL — Text2Tree with dynamic mixup replaced by plain cross-entropy
    /// on the unmixed batch, the label tree and projector trained by SSL as in <see cref="Text2Tree"/>.
    /// </summary>
    public const string Text2TreeSsl = "text2tree-ssl";
    public const string Finetune = "finetune";
    public const string Reweight = "reweight";
    public const string Focal = "focal";
    public const string Mixup = "mixup";

    public static IReadOnlyList<string> All { get; } = [Text2Tree, Text2TreeSsl, Finetune, Reweight, Focal, Mixup];

    /// <summary>Whether <paramref name="method"/> has a label tree (cascade and projector) and uses λ and τ.</summary>
    public static bool UsesLabelTree(string method) => method is Text2Tree or Text2TreeSsl;

    /// <summary>
    /// Whether a grid runs <paramref name="method"/> at <paramref name="lambda"/>: SSL only at λ = 0 is cross-entropy alone on
    /// the same head, i.e. fine-tuning, so a grid leaves it out.
    /// </summary>
    public static bool RunsAt(string method, double lambda) => !(method == Text2TreeSsl && lambda == 0);

    public static string Require(string method) => All.Contains(method)
        ? method
        : throw new UserInputException($"unknown method '{method}'; use one of: {string.Join(", ", All)}.");
}

/// <summary>The forms of the Text2Tree objective (<c>--objective</c>).</summary>
public static class Text2TreeObjectives
{
    /// <summary>
    /// As the paper and its authors' code define it: label similarity softmax(cos) over the batch with the sample itself
    /// included and no temperature; SSL on a projector's output scaled by τ/0.07; DML keeps the share l = M_ij / max_k M_ik
    /// of the sample itself, so dissimilar partners mix in more; logits from the linear head alone.
    /// </summary>
    public const string Paper = "paper";

    /// <summary>
    /// Babel's earlier variant: τ inside the label softmax, the sample itself left out, SSL on the pooled representation
    /// unscaled, DML giving the similar partner the larger share, and a label-match logit proj(z)·Lᵀ/√h added to the head.
    /// </summary>
    public const string Babel = "babel";

    public static IReadOnlyList<string> All { get; } = [Paper, Babel];
}

/// <summary>Hyper-parameters of one classification run; every value is recorded in <c>manifest.json</c>.</summary>
public sealed record Text2TreeOptions
{
    [JsonPropertyName("method")] public string Method { get; init; } = Text2TreeMethods.Text2Tree;
    /// <summary>The form of the Text2Tree objective (<see cref="Text2TreeObjectives"/>): the paper's by default.</summary>
    [JsonPropertyName("objective")] public string Objective { get; init; } = Text2TreeObjectives.Paper;
    /// <summary>The form of the label tree's cascade attention (<see cref="Text2TreeCascades"/>): the authors' by default.</summary>
    [JsonPropertyName("cascade")] public string Cascade { get; init; } = Text2TreeCascades.Paper;
    /// <summary>Weight of L_SSL in (1 − λ)·L_DML + λ·L_SSL; the authors' grid is 0.001, 0.005, 0.01, 0.05.</summary>
    [JsonPropertyName("lambda")] public double Lambda { get; init; } = 0.01;
    /// <summary>Temperature of the contrastive term (and, in Babel's variant, of the label-similarity softmax); the authors' grid is 0.5, 1, 2, 3.</summary>
    [JsonPropertyName("tau")] public double Tau { get; init; } = 1.0;
    [JsonPropertyName("seed")] public long Seed { get; init; } = 1;
    [JsonPropertyName("steps")] public int Steps { get; init; } = 300;
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 64;
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; } = 3e-3;
    /// <summary>The label tree's parameters train at this fraction of the learning rate.</summary>
    [JsonPropertyName("label_learning_rate_ratio")] public double LabelLearningRateRatio { get; init; } = 0.1;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.01;
    [JsonPropertyName("warmup_fraction")] public double WarmupFraction { get; init; } = 0.05;
    [JsonPropertyName("max_tokens")] public int MaxTokens { get; init; } = 32;
    /// <summary>Training records used (0 = all); a stratified subset that keeps every label (see <c>Text2TreeData</c>).</summary>
    [JsonPropertyName("max_train")] public int MaxTrain { get; init; } = 8000;
    /// <summary>Validation and test records used (0 = all), chosen the same way.</summary>
    [JsonPropertyName("max_eval")] public int MaxEval { get; init; } = 2000;
    /// <summary>"tiny" (a new encoder from scratch, with a BPE tokenizer trained on the training texts) or a Babel model folder.</summary>
    [JsonPropertyName("encoder")] public string Encoder { get; init; } = "tiny";
    /// <summary>Decoder layers of a from-scratch encoder.</summary>
    [JsonPropertyName("encoder_layers")] public int EncoderLayers { get; init; } = 2;
    /// <summary>
    /// Steps of self-supervised pretraining of the encoder (next-token prediction on the training texts, no labels) before
    /// the classifier trains; 0 = none. The same for every method at a seed, so methods compare on one encoder.
    /// </summary>
    [JsonPropertyName("encoder_pretrain_steps")] public int EncoderPretrainSteps { get; init; }
    [JsonPropertyName("tokenizer_vocab")] public int TokenizerVocab { get; init; } = 2048;
    /// <summary>"description" (mean token embedding of each node's description) or "random".</summary>
    [JsonPropertyName("label_init")] public string LabelInit { get; init; } = "description";
    [JsonPropertyName("focal_gamma")] public double FocalGamma { get; init; } = 2.0;
    [JsonPropertyName("mixup_alpha")] public double MixupAlpha { get; init; } = 0.4;
    [JsonPropertyName("eval_interval")] public int EvalInterval { get; init; } = 100;
    [JsonPropertyName("checkpoint_interval")] public int CheckpointInterval { get; init; } = 100;
    [JsonPropertyName("threads")] public int Threads { get; init; } = 1;

    public Text2TreeOptions Validate()
    {
        Text2TreeMethods.Require(Method);
        if (!Text2TreeObjectives.All.Contains(Objective)) throw new UserInputException($"--objective must be one of {string.Join(", ", Text2TreeObjectives.All)} (got '{Objective}').");
        if (!Text2TreeCascades.All.Contains(Cascade)) throw new UserInputException($"--cascade must be one of {string.Join(", ", Text2TreeCascades.All)} (got '{Cascade}').");
        if (!(Lambda >= 0 && Lambda <= 1)) throw new UserInputException($"--lambda must be in [0, 1] (got {Lambda}); it weighs L_SSL against L_DML.");
        if (!(Tau > 0) || double.IsInfinity(Tau)) throw new UserInputException($"--tau must be a positive temperature (got {Tau}).");
        if (Steps <= 0) throw new UserInputException($"--steps must be positive (got {Steps}).");
        if (BatchSize < 2) throw new UserInputException($"--batch-size must be at least 2 (got {BatchSize}); the pairwise losses need pairs.");
        if (!(LearningRate > 0)) throw new UserInputException($"--lr must be positive (got {LearningRate}).");
        if (MaxTokens < 2) throw new UserInputException($"--max-tokens must be at least 2 (got {MaxTokens}).");
        if (MaxTrain < 0 || MaxEval < 0) throw new UserInputException("--max-train and --max-eval must be 0 (all) or positive.");
        if (EncoderPretrainSteps < 0) throw new UserInputException($"--encoder-pretrain-steps must be 0 (none) or positive (got {EncoderPretrainSteps}).");
        if (EncoderLayers < 1) throw new UserInputException($"--encoder-layers must be positive (got {EncoderLayers}).");
        if (LabelInit is not ("description" or "random")) throw new UserInputException($"--label-init must be 'description' or 'random' (got '{LabelInit}').");
        if (EvalInterval <= 0 || CheckpointInterval <= 0) throw new UserInputException("the evaluation and checkpoint intervals must be positive.");
        if (Threads <= 0) throw new UserInputException($"--threads must be positive (got {Threads}).");
        return this;
    }

    /// <summary>Learning-rate multiplier at <paramref name="step"/>: linear warmup, then cosine decay to a tenth.</summary>
    public double ScheduleAt(int step)
    {
        var warmup = Math.Max(1, (int)Math.Round(WarmupFraction * Steps));
        if (step < warmup) return (step + 1) / (double)warmup;
        var progress = Math.Min(1.0, (step - warmup) / (double)Math.Max(1, Steps - warmup));
        return 0.1 + 0.45 * (1 + Math.Cos(Math.PI * progress));
    }
}
