using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Text2Tree;
using Babel.Modeling.Training;

namespace Babel.Client.Commands;

/// <summary><c>babel text2tree train|grid</c>: hierarchy-aware classification of imbalanced codes (Text2Tree) and its baselines.</summary>
internal static class Text2TreeCommand
{
    public static Command Create()
    {
        var command = new Command("text2tree", "Hierarchy-aware classification of imbalanced codes (Text2Tree: cascade attention, SSL + DML) and baselines.");
        command.Subcommands.Add(CreateTrain());
        command.Subcommands.Add(Text2TreeGridCommand.Create());
        return command;
    }

    /// <summary>The hyper-parameter options shared by train and grid.</summary>
    internal sealed class TrainingOptions
    {
        public Option<string> Data { get; } = new("--data") { Description = "Dataset folder from 'babel data icpc' or 'babel data codes'.", Required = true };
        public Option<int> Steps { get; } = new("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => new Text2TreeOptions().Steps };
        public Option<int?> Epochs { get; } = new("--epochs") { Description = "Train for this many passes over the training records instead of --steps." };
        public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Records per step.", DefaultValueFactory = _ => new Text2TreeOptions().BatchSize };
        public Option<double> LearningRate { get; } = new("--lr") { Description = "Peak learning rate (the label tree trains at a tenth).", DefaultValueFactory = _ => new Text2TreeOptions().LearningRate };
        public Option<int> MaxTrain { get; } = new("--max-train") { Description = "Stratified subset of training records that keeps every label (0 = all).", DefaultValueFactory = _ => new Text2TreeOptions().MaxTrain };
        public Option<int> MaxEval { get; } = new("--max-eval") { Description = "Stratified subset of validation and test records (0 = all).", DefaultValueFactory = _ => new Text2TreeOptions().MaxEval };
        public Option<string> Encoder { get; } = new("--encoder") { Description = "'tiny' (new encoder and BPE tokenizer trained on the training texts) or a Babel model folder.", DefaultValueFactory = _ => "tiny" };
        public Option<int> EncoderLayers { get; } = new("--encoder-layers") { Description = "Decoder layers of a 'tiny' encoder.", DefaultValueFactory = _ => new Text2TreeOptions().EncoderLayers };
        public Option<int> EncoderPretrainSteps { get; } = new("--encoder-pretrain-steps") { Description = "Steps of self-supervised next-token pretraining of the encoder on the training texts (no labels) before the classifier trains; 0 = none." };
        public Option<string> LabelInit { get; } = new("--label-init") { Description = "Label embeddings from the mean token embedding of each description ('description') or 'random'.", DefaultValueFactory = _ => "description" };
        public Option<int> EvalInterval { get; } = new("--eval-interval") { Description = "Steps between validation evaluations (checkpoint selection on macro-F1).", DefaultValueFactory = _ => new Text2TreeOptions().EvalInterval };
        public Option<int> Threads { get; } = new("--threads") { Description = "Torch threads.", DefaultValueFactory = _ => 1 };
        public Option<string> Objective { get; } = new("--objective")
        {
            Description = "Form of the text2tree objective: 'paper' (the paper's and its authors' code: label softmax without τ with the sample itself, SSL on a projector scaled by τ/0.07, dissimilar partners mixed in more, linear-head logits) or 'babel' (Babel's earlier variant).",
            DefaultValueFactory = _ => Text2TreeObjectives.Paper,
        };
        public Option<string> Cascade { get; } = new("--cascade")
        {
            Description = "Form of the label tree's cascade attention: 'paper' (the authors' code: a gate per sibling edge, level output replacing its nodes, LayerNorm over every node) or 'babel' (a gate per node, residual and LayerNorm over the level only).",
            DefaultValueFactory = _ => Text2TreeCascades.Paper,
        };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Data, Steps, Epochs, BatchSize, LearningRate, MaxTrain, MaxEval, Encoder, EncoderLayers, LabelInit, EvalInterval, Threads, Objective, Cascade, EncoderPretrainSteps })
            {
                command.Options.Add(option);
            }
        }

        /// <summary>The options of a run, with --epochs turned into steps over the (subset) training split.</summary>
        public Text2TreeOptions Read(ParseResult parse)
        {
            var options = new Text2TreeOptions
            {
                Steps = parse.GetValue(Steps),
                BatchSize = parse.GetValue(BatchSize),
                LearningRate = parse.GetValue(LearningRate),
                MaxTrain = parse.GetValue(MaxTrain),
                MaxEval = parse.GetValue(MaxEval),
                Encoder = parse.GetValue(Encoder)!,
                EncoderLayers = parse.GetValue(EncoderLayers),
                EncoderPretrainSteps = parse.GetValue(EncoderPretrainSteps),
                LabelInit = parse.GetValue(LabelInit)!,
                EvalInterval = parse.GetValue(EvalInterval),
                Threads = parse.GetValue(Threads),
                Objective = parse.GetValue(Objective)!,
                Cascade = parse.GetValue(Cascade)!,
            };
            if (parse.GetValue(Epochs) is { } epochs)
            {
                if (epochs <= 0) throw new Storage.UserInputException($"--epochs must be positive (got {epochs}).");
                var train = Text2TreeData.Load(parse.GetValue(Data)!, options.MaxTrain, options.MaxEval).Train.Count;
                options = options with { Steps = Math.Max(1, (int)Math.Ceiling(epochs * train / (double)options.BatchSize)) };
            }
            if (options.EvalInterval > options.Steps) options = options with { EvalInterval = options.Steps };
            return options with { CheckpointInterval = options.EvalInterval };
        }
    }

    private static Command CreateTrain()
    {
        var shared = new TrainingOptions();
        var method = new Option<string>("--method") { Description = $"{string.Join(", ", Text2TreeMethods.All)}.", DefaultValueFactory = _ => Text2TreeMethods.Text2Tree };
        var lambda = new Option<double>("--lambda") { Description = "λ in (1 − λ)·L_DML + λ·L_SSL, in [0, 1].", DefaultValueFactory = _ => new Text2TreeOptions().Lambda };
        var tau = new Option<double>("--tau") { Description = "Temperature τ > 0 of SSL and of the label similarities.", DefaultValueFactory = _ => new Text2TreeOptions().Tau };
        var seed = new Option<long>("--seed") { Description = "Seed of initialisation, data order and mixup draws.", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = $"Run folder: metrics.json, manifest.json, {TrainingHistory.FileName}, {TrainingHistory.PlotFileName}, tokenizer/, checkpoint/ (a rerun resumes).", Required = true };
        var command = new Command("train", "Train and evaluate one classifier; a rerun with the same options resumes from the checkpoint.")
        {
            method, lambda, tau, seed, output,
        };
        shared.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var options = shared.Read(parse) with
            {
                Method = parse.GetValue(method)!,
                Lambda = parse.GetValue(lambda),
                Tau = parse.GetValue(tau),
                Seed = parse.GetValue(seed),
            };
            options.Validate();
            var writer = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            var progress = new SynchronousProgress<Text2TreeProgress>(p =>
            {
                if (p.ValidationMacroF1 is { } f1)
                {
                    error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.Steps} loss {p.Loss:F4} validation macro-F1 {f1:F4} ({p.ExamplesPerSecond:F0} examples/s)"));
                }
            });
            var metrics = Text2TreeTrainer.Train(parse.GetValue(shared.Data)!, options, parse.GetValue(output)!, progress, cancellationToken);
            WriteScores(writer, metrics);
            writer.WriteLine($"wrote {Path.Combine(Path.GetFullPath(parse.GetValue(output)!), Text2TreeTrainer.MetricsFile)}");
            return Task.FromResult(0);
        });
        return command;
    }

    internal static void WriteScores(TextWriter writer, Text2TreeMetrics metrics)
    {
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{metrics.Method} seed {metrics.Seed}: best step {metrics.BestStep}; test macro-F1 {metrics.Test.MacroF1:F4}, micro-F1 {metrics.Test.MicroF1:F4}, accuracy {metrics.Test.Accuracy:F4}"));
        foreach (var bucket in metrics.Test.Buckets)
        {
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {bucket.Name,-6} ({bucket.Rule}): {bucket.Labels} labels, macro-F1 {bucket.MacroF1:F4}"));
        }
    }
}
