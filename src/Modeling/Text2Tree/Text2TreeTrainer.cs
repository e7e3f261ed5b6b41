using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Babel.Modeling.Text2Tree;

/// <summary>Progress of a run after a step; <see cref="ValidationMacroF1"/> is set on evaluation steps.</summary>
public readonly record struct Text2TreeProgress(int Step, int Steps, double Loss, double? ValidationMacroF1, double ExamplesPerSecond, bool Resumed);

/// <summary><c>metrics.json</c> of a run: scores of the checkpoint selected on validation macro-F1.</summary>
public sealed record Text2TreeMetrics(
    [property: JsonPropertyName("method")] string Method,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("lambda")] double Lambda,
    [property: JsonPropertyName("tau")] double Tau,
    [property: JsonPropertyName("best_step")] int BestStep,
    [property: JsonPropertyName("validation")] ClassificationScores Validation,
    [property: JsonPropertyName("test")] ClassificationScores Test,
    [property: JsonPropertyName("train_examples_per_second")] double TrainExamplesPerSecond,
    [property: JsonPropertyName("evaluations")] IReadOnlyList<StepScore> Evaluations);

/// <summary>Validation macro-F1 at a step.</summary>
public sealed record StepScore([property: JsonPropertyName("step")] int Step, [property: JsonPropertyName("macro_f1")] double MacroF1);

/// <summary>
/// Trains and evaluates one classifier (Text2Tree or a baseline). Deterministic for given options and data: the data
/// order and every random draw are functions of (seed, step), so a run resumed from its checkpoint (weights, optimizer
/// moments, best weights, step) continues exactly as an uninterrupted one. The checkpoint with the best validation
/// macro-F1 is kept and scored on the test split.
/// </summary>
public static class Text2TreeTrainer
{
    public const string MetricsFile = "metrics.json";
    public const string ManifestFile = "manifest.json";
    public const string CheckpointFolder = "checkpoint";
    public const string TokenizerFolder = "tokenizer";
    /// <summary>The encoder's self-supervised pretraining checkpoint (with <see cref="Text2TreeOptions.EncoderPretrainSteps"/>).</summary>
    public const string EncoderPretrainingFolder = "encoder-pretraining";
    private const string StateFile = "trainer.json";
    private const string ModelFile = "model.safetensors";
    private const string BestFile = "best.safetensors";
    private const string OptimizerFile = "optimizer.bin";
    private const int EvalBatch = 256;

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true };
    private static readonly Lock _initialisation = new();

    private sealed record TrainerState(int Step, string Fingerprint, int BestStep, double BestMacroF1, List<double> Losses, List<StepScore> Evaluations);

    /// <summary>
    /// Trains on <paramref name="dataDirectory"/> and writes metrics.json, manifest.json, the per-step history
    /// (<see cref="TrainingHistory"/>), the tokenizer and the checkpoint into <paramref name="outDirectory"/>.
    /// </summary>
    public static Text2TreeMetrics Train(string dataDirectory, Text2TreeOptions options, string outDirectory,
        IProgress<Text2TreeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var data = Text2TreeData.Load(dataDirectory, options.MaxTrain, options.MaxEval);
        return Train(data, options, outDirectory, dataDirectory, progress, cancellationToken);
    }

    public static Text2TreeMetrics Train(Text2TreeData data, Text2TreeOptions options, string outDirectory, string dataSource,
        IProgress<Text2TreeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        TorchRuntime.Initialize(options.Threads);
        var output = Path.GetFullPath(outDirectory);
        Directory.CreateDirectory(output);
        using var tokenizer = LoadTokenizer(options, data, output);
        var (model, encoderSource) = CreateClassifier(options, data, tokenizer, output);
        using var disposeModel = model;
        var encoder = model.Encoder;
        var tokens = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var example in data.Train.Concat(data.Validation).Concat(data.Test))
        {
            tokens[example.Id] = Tokens(tokenizer, example.Text, options.MaxTokens);
        }
        var padId = tokenizer.PadId;

        var textParameters = model.TextParameters();
        var labelParameters = model.LabelParameters();
        var groups = new List<AdamW.ParamGroup> { new(textParameters, new AdamW.Options { LearningRate = options.LearningRate }) };
        if (labelParameters.Count > 0) groups.Add(new AdamW.ParamGroup(labelParameters, new AdamW.Options { LearningRate = options.LearningRate * options.LabelLearningRateRatio }));
        using var optimizer = new HeldScalars.AdamW(groups, lr: options.LearningRate, weightDecay: options.WeightDecay);
        var ratios = new[] { 1.0, options.LabelLearningRateRatio };

        var fingerprint = JsonSerializer.Serialize(options with { Threads = 0, CheckpointInterval = 0 }) + $"|{data.Train.Count}|{data.Tree.LabelCount}";
        var checkpoint = Path.Combine(output, CheckpointFolder);
        var state = TryResume(model, optimizer, checkpoint, fingerprint, out var best)
            ?? new TrainerState(0, fingerprint, 0, double.NegativeInfinity, [], []);
        var resumed = state.Step > 0;
        var history = TrainingHistory.Open(output, state.Step);
        using var classWeights = tensor(Text2TreeLosses.InverseFrequencyWeights(data.TrainCounts));
        var order = new EpochOrder(data.Train.Count, options.Seed);
        var stopwatch = Stopwatch.StartNew();
        var trainedHere = 0;
        long tokensHere = 0;

        for (var step = state.Step; step < options.Steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            model.train();
            var schedule = options.ScheduleAt(step);
            for (var g = 0; g < optimizer.ParamGroups.Count(); g++) optimizer.ParamGroups.ElementAt(g).LearningRate = options.LearningRate * ratios[g] * schedule;
            double loss;
            using (var scope = NewDisposeScope())
            {
                var batch = order.Batch(step, options.BatchSize).Select(i => data.Train[i]).ToList();
                tokensHere += batch.Sum(e => (long)tokens[e.Id].Length);
                var (ids, mask) = Pad(batch.Select(e => tokens[e.Id]).ToList(), padId);
                using var targets = data.Tree.MultiHot([.. batch.Select(e => e.Labels)]);
                optimizer.zero_grad();
                var objective = Objective(model, options, data.Multilabel, ids, mask, targets, classWeights, step);
                objective.backward();
                nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                optimizer.step();
                loss = objective.item<float>();
            }
            if (!double.IsFinite(loss)) throw new UserInputException($"training diverged at step {step + 1} (loss {loss}); lower --lr.");
            trainedHere += options.BatchSize;
            var done = step + 1;
            state.Losses.Add(loss);
            double? validation = null;
            if (done % options.EvalInterval == 0 || done == options.Steps)
            {
                // Evaluation time is not training time: examples/s counts optimizer steps only.
                stopwatch.Stop();
                var scores = Evaluate(model, data, data.Validation, tokens, padId);
                validation = scores.MacroF1;
                state.Evaluations.Add(new StepScore(done, scores.MacroF1));
                if (scores.MacroF1 > state.BestMacroF1 || best is null)
                {
                    DisposeAll(best);
                    best = Clone(model.State());
                    state = state with { BestStep = done, BestMacroF1 = scores.MacroF1 };
                }
                stopwatch.Start();
            }
            state = state with { Step = done };
            var seconds = stopwatch.Elapsed.TotalSeconds;
            history.Append(new TrainingStep(done, loss, options.LearningRate * schedule, tokensHere / seconds, validation, ExamplesPerSecond: trainedHere / seconds));
            progress?.Report(new Text2TreeProgress(done, options.Steps, loss, validation, trainedHere / seconds, resumed));
            if (done % options.CheckpointInterval == 0 || done == options.Steps) SaveCheckpoint(model, optimizer, best, checkpoint, state);
        }
        var examplesPerSecond = trainedHere == 0 ? 0 : trainedHere / stopwatch.Elapsed.TotalSeconds;
        history.SavePlot(string.Create(CultureInfo.InvariantCulture, $"{options.Method}, seed {options.Seed}: {options.Steps} steps of {options.BatchSize}"), "validation macro-F1");
        if (best is not null) model.LoadState(best, "the best checkpoint");
        DisposeAll(best);
        var metrics = new Text2TreeMetrics(options.Method, options.Seed, options.Lambda, options.Tau, state.BestStep,
            Evaluate(model, data, data.Validation, tokens, padId), Evaluate(model, data, data.Test, tokens, padId), examplesPerSecond, state.Evaluations);
        AtomicFile.WriteAllText(Path.Combine(output, MetricsFile), JsonSerializer.Serialize(metrics, _indented));
        var manifest = new
        {
            data = dataSource,
            encoder = encoderSource,
            encoder_config = encoder.Config,
            options,
            labels = data.Tree.LabelCount,
            tree_nodes = data.Tree.NodeCount,
            tree_levels = data.Tree.Levels,
            multilabel = data.Multilabel,
            train = data.Train.Count,
            validation = data.Validation.Count,
            test = data.Test.Count,
            buckets = ClassificationMetrics.BucketNames.Select(b => new { name = b, rule = ClassificationMetrics.BucketRule(b), labels = data.TrainCounts.Count(c => ClassificationMetrics.BucketOf(c) == b) }),
            parameters = model.parameters().Sum(p => p.numel()),
            label_parameters = labelParameters.Sum(p => p.numel()),
        };
        AtomicFile.WriteAllText(Path.Combine(output, ManifestFile), JsonSerializer.Serialize(manifest, _indented));
        return metrics;
    }

    /// <summary>The training loss of <paramref name="options"/>.Method on one batch.</summary>
    public static Tensor Objective(Text2TreeClassifier model, Text2TreeOptions options, bool multilabel, Tensor ids, Tensor mask, Tensor targets, Tensor classWeights, int step)
    {
        using var scope = NewDisposeScope();
        var z = model.Encode(ids, mask);
        Tensor loss;
        switch (options.Method)
        {
            case Text2TreeMethods.Text2Tree or Text2TreeMethods.Text2TreeSsl:
                // One path for Text2Tree and its "SSL only" ablation: the latter only swaps DML for plain cross-entropy.
                var labels = model.LabelEmbeddings()!;
                var mixup = options.Method == Text2TreeMethods.Text2Tree;
                loss = options.Objective == Text2TreeObjectives.Paper
                    ? Text2TreeLosses.PaperText2Tree(z, model.Project(z), targets, labels, x => model.Classify(x, labels), multilabel, options.Lambda, options.Tau, mixup).Total
                    : Text2TreeLosses.Text2Tree(z, targets, labels, x => model.Classify(x, labels), multilabel, options.Lambda, options.Tau, mixup).Total;
                break;
            case Text2TreeMethods.Finetune:
                loss = Text2TreeLosses.SoftLabelLoss(model.Classify(z, null), targets, multilabel);
                break;
            case Text2TreeMethods.Reweight:
                loss = Text2TreeLosses.SoftLabelLoss(model.Classify(z, null), targets, multilabel, classWeights);
                break;
            case Text2TreeMethods.Focal:
                loss = Text2TreeLosses.Focal(model.Classify(z, null), targets, multilabel, options.FocalGamma);
                break;
            default:
                // Mixup of the pooled representations with a Beta(α, α) ratio and a random partner, both drawn from (seed, step).
                var random = new Random(EpochOrder.StepSeed(options.Seed, step));
                var ratio = Beta(random, options.MixupAlpha);
                var partner = tensor(EpochOrder.Permutation(random, (int)z.shape[0]).Select(i => (long)i).ToArray());
                var mixed = ratio * z + (1 - ratio) * z.index_select(0, partner);
                var soft = ratio * targets + (1 - ratio) * targets.index_select(0, partner);
                loss = Text2TreeLosses.SoftLabelLoss(model.Classify(mixed, null), soft, multilabel);
                break;
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Scores <paramref name="examples"/>: argmax (multiclass) or sigmoid ≥ 0.5 with at least the top label (multilabel).</summary>
    public static ClassificationScores Evaluate(Text2TreeClassifier model, Text2TreeData data, IReadOnlyList<LabelledExample> examples, IReadOnlyDictionary<string, long[]> tokens, int padId)
    {
        model.eval();
        using var guard = no_grad();
        using var labelScope = NewDisposeScope();
        var labels = model.LabelEmbeddings();
        var predicted = new List<int[]>(examples.Count);
        for (var start = 0; start < examples.Count; start += EvalBatch)
        {
            using var scope = NewDisposeScope();
            var batch = examples.Skip(start).Take(EvalBatch).ToList();
            var (ids, mask) = Pad(batch.Select(e => tokens[e.Id]).ToList(), padId);
            var logits = model.Classify(model.Encode(ids, mask), labels);
            var top = logits.argmax(1).data<long>().ToArray();
            if (!data.Multilabel)
            {
                predicted.AddRange(top.Select(t => new[] { (int)t }));
                continue;
            }
            var above = logits.sigmoid().ge(0.5).to_type(ScalarType.Byte);
            for (var row = 0; row < batch.Count; row++)
            {
                var set = above[row].nonzero().view(-1).data<long>().Select(v => (int)v).ToList();
                predicted.Add(set.Count > 0 ? [.. set] : [(int)top[row]]);
            }
        }
        return ClassificationMetrics.Score([.. examples.Select(e => e.Labels)], predicted, data.TrainCounts);
    }

    /// <summary>BOS followed by at most <paramref name="maxTokens"/> − 1 tokens of <paramref name="text"/>.</summary>
    public static long[] Tokens(ITokenizer tokenizer, string text, int maxTokens) =>
        [tokenizer.BosId, .. tokenizer.Encode(text).Take(maxTokens - 1).Select(i => (long)i)];

    /// <summary>Left-padded ids [batch, longest] and mask (1 = token), as <see cref="CausalLanguageModel.Hidden"/> expects.</summary>
    public static (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<long[]> rows, int padId)
    {
        var length = rows.Max(r => r.Length);
        var ids = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        for (var r = 0; r < rows.Count; r++)
        {
            var offset = r * length + length - rows[r].Length;
            Array.Fill(ids, padId, r * length, length - rows[r].Length);
            Array.Copy(rows[r], 0, ids, offset, rows[r].Length);
            Array.Fill(mask, 1L, offset, rows[r].Length);
        }
        return (tensor(ids, [rows.Count, length]), tensor(mask, [rows.Count, length]));
    }

    /// <summary>
    /// Builds the classifier with weights drawn from the global generator seeded by the run's seed. Layers initialise from
    /// torch's one global generator, so concurrent runs in one process (grid workers) take turns here to stay deterministic.
    /// </summary>
    private static (Text2TreeClassifier Model, string EncoderSource) CreateClassifier(Text2TreeOptions options, Text2TreeData data, ITokenizer tokenizer, string output)
    {
        var tree = data.Tree;
        lock (_initialisation)
        {
            var (encoder, source) = LoadEncoder(options, tokenizer);
            if (options.EncoderPretrainSteps > 0)
            {
                PretrainEncoder(encoder, options, data, tokenizer, Path.Combine(output, EncoderPretrainingFolder));
                source += $", then {options.EncoderPretrainSteps} steps of next-token pretraining on the training texts";
            }
            manual_seed(options.Seed);
            CascadeAttention? cascade = null;
            if (Text2TreeMethods.UsesLabelTree(options.Method))
            {
                using var initial = options.LabelInit == "description"
                    ? Text2TreeClassifier.MeanTokenEmbeddings(encoder, [.. tree.Descriptions.Select(d => tokenizer.Encode(d))], rescale: options.Cascade == Text2TreeCascades.Babel)
                    : null;
                cascade = new CascadeAttention(tree, encoder.Config.HiddenSize, initial, options.Cascade);
            }
            return (new Text2TreeClassifier(encoder, tree.LabelCount, cascade, labelLogits: options.Objective == Text2TreeObjectives.Babel), source);
        }
    }

    /// <summary>
    /// Self-supervised pretraining of the encoder: next-token prediction on the training texts (each as [BOS] text [EOS],
    /// no labels), windows of the classifier's token budget, seeded by the run's seed; resumable from its own checkpoint.
    /// </summary>
    private static void PretrainEncoder(CausalLanguageModel encoder, Text2TreeOptions options, Text2TreeData data, ITokenizer tokenizer, string checkpointDirectory)
    {
        var texts = TokenStream.FromDocuments(tokenizer, data.Train.Select(e => e.Text));
        var pretraining = new PretrainingOptions
        {
            Steps = options.EncoderPretrainSteps, BatchSize = 32, SequenceLength = Math.Min(options.MaxTokens, encoder.Config.MaxPositionEmbeddings),
            LearningRate = options.LearningRate, Seed = options.Seed, Threads = options.Threads, CheckpointInterval = Math.Max(1, options.CheckpointInterval),
        };
        Pretrainer.Train(encoder, texts, pretraining, checkpointDirectory);
    }

    private static HuggingFaceTokenizer LoadTokenizer(Text2TreeOptions options, Text2TreeData data, string output)
    {
        if (options.Encoder != "tiny") return HuggingFaceTokenizer.Load(options.Encoder);
        var folder = Path.Combine(output, TokenizerFolder);
        if (!File.Exists(Path.Combine(folder, "tokenizer.json")))
        {
            // Trained on the training texts only (and the label descriptions), so no test text shapes the vocabulary.
            var bpe = ByteLevelBpeTrainer.Train(data.Train.Select(e => e.Text).Concat(data.Tree.Descriptions), options.TokenizerVocab);
            bpe.Save(folder);
        }
        return HuggingFaceTokenizer.Load(folder);
    }

    private static (CausalLanguageModel Encoder, string Source) LoadEncoder(Text2TreeOptions options, ITokenizer tokenizer)
    {
        if (options.Encoder != "tiny")
        {
            var loaded = CausalLanguageModel.Load(options.Encoder);
            if (loaded.Config.VocabSize < tokenizer.VocabSize)
            {
                throw new UserInputException($"the tokenizer in '{options.Encoder}' has {tokenizer.VocabSize} ids but the model only {loaded.Config.VocabSize}; use the model's own tokenizer.json.");
            }
            return (loaded, Path.GetFullPath(options.Encoder));
        }
        var config = ModelPresets.Create("tiny", tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId) with
        {
            NumHiddenLayers = options.EncoderLayers,
            MaxPositionEmbeddings = Math.Max(64, options.MaxTokens),
        };
        var model = new CausalLanguageModel(config);
        model.InitializeWeights(options.Seed);
        return (model, $"tiny from scratch ({options.EncoderLayers} layers, hidden {config.HiddenSize})");
    }

    private static TrainerState? TryResume(Text2TreeClassifier model, AdamW optimizer, string directory, string fingerprint, out Dictionary<string, Tensor>? best)
    {
        best = null;
        var path = Path.Combine(directory, StateFile);
        if (!File.Exists(path)) return null;
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path))
            ?? throw new UserInputException($"{path} is empty; delete {directory} to train afresh.");
        if (state.Fingerprint != fingerprint)
        {
            throw new UserInputException($"{directory} holds a checkpoint of a run with other options or data; delete it or rerun with the same options to resume.");
        }
        var weights = SafeTensors.Read(Path.Combine(directory, ModelFile));
        model.LoadState(weights, directory);
        DisposeAll(weights);
        optimizer.load_state_dict(Path.Combine(directory, OptimizerFile));
        var bestPath = Path.Combine(directory, BestFile);
        if (File.Exists(bestPath)) best = SafeTensors.Read(bestPath);
        return state with { BestMacroF1 = best is null ? double.NegativeInfinity : state.BestMacroF1 };
    }

    private static void SaveCheckpoint(Text2TreeClassifier model, AdamW optimizer, Dictionary<string, Tensor>? best, string directory, TrainerState state) =>
        AtomicFile.WriteDirectory(directory, temporary =>
        {
            SafeTensors.Write(Path.Combine(temporary, ModelFile), model.State());
            if (best is not null) SafeTensors.Write(Path.Combine(temporary, BestFile), best);
            optimizer.save_state_dict(Path.Combine(temporary, OptimizerFile));
            File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state));
        });

    private static Dictionary<string, Tensor> Clone(Dictionary<string, Tensor> state) =>
        state.ToDictionary(p => p.Key, p => p.Value.detach().clone().MoveToOuterDisposeScope(), StringComparer.Ordinal);

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors.Values) t.Dispose();
    }


    /// <summary>Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α).</summary>
    internal static double Beta(Random random, double alpha)
    {
        var x = Gamma(random, alpha);
        var y = Gamma(random, alpha);
        return x + y == 0 ? 0.5 : x / (x + y);
    }

    /// <summary>Marsaglia–Tsang Gamma(α, 1); for α &lt; 1, Gamma(α + 1)·U^(1/α).</summary>
    private static double Gamma(Random random, double alpha)
    {
        if (alpha < 1) return Gamma(random, alpha + 1) * Math.Pow(random.NextDouble(), 1 / alpha);
        var d = alpha - 1.0 / 3;
        var c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                // Box–Muller normal draw.
                x = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                v = 1 + c * x;
            }
            while (v <= 0);
            v = v * v * v;
            var u = random.NextDouble();
            if (Math.Log(1 - u) < 0.5 * x * x + d - d * v + d * Math.Log(v)) return d * v;
        }
    }
}
