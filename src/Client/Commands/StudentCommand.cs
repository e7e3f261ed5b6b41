using System.CommandLine;
using System.Globalization;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;

namespace Babel.Client.Commands;

/// <summary>The student options of <c>babel distill train</c> and <c>grid</c>, their progress and summary lines, and <c>babel data arithmetic</c> (the generated word-problem set).</summary>
internal static class StudentCommand
{
    /// <summary>The student options shared by <c>distill train</c> and <c>distill grid</c>.</summary>
    internal sealed class TrainingOptions
    {
        private static readonly StudentOptions _defaults = new();
        public Option<string> Data { get; } = new("--data") { Description = "Distillation folder: the --out of 'babel distill generate' or 'babel data arithmetic'.", Required = true };
        public Option<string?> Test { get; } = new("--test") { Description = "Test split, jsonl:PATH or gsm8k:PATH (default: test.jsonl beside the dataset in the folder's manifest)." };
        public Option<double> Alpha { get; } = new("--alpha") { Description = "Weight of the answer loss: L = α·L_label + (1 − α)·L_rationale.", DefaultValueFactory = _ => _defaults.Alpha };
        public Option<int> Steps { get; } = new("--steps") { Description = "Steps of the distillation stage.", DefaultValueFactory = _ => _defaults.Steps };
        public Option<int> SelfEvaluationSteps { get; } = new("--self-evaluation-steps") { Description = "Steps of the self-evaluation stage of the -se settings.", DefaultValueFactory = _ => _defaults.SelfEvaluationSteps };
        public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Examples per step.", DefaultValueFactory = _ => _defaults.BatchSize };
        public Option<double> LearningRate { get; } = new("--lr") { Description = "Peak learning rate (AdamW, warmup then cosine).", DefaultValueFactory = _ => _defaults.LearningRate };
        public Option<int> SequenceLength { get; } = new("--sequence-length") { Description = "Longest example in tokens; longer ones are left out and counted.", DefaultValueFactory = _ => _defaults.SequenceLength };
        public Option<int> EvalInterval { get; } = new("--eval-interval") { Description = "Steps between validation evaluations and checkpoints.", DefaultValueFactory = _ => _defaults.EvalInterval };
        public Option<double> ValidationFraction { get; } = new("--validation-fraction") { Description = "Share of training questions held out for checkpoint selection.", DefaultValueFactory = _ => _defaults.ValidationFraction };
        public Option<int> TokenizerVocab { get; } = new("--tokenizer-vocab") { Description = "Vocabulary of the tokenizer learnt for a preset student.", DefaultValueFactory = _ => _defaults.TokenizerVocab };
        public Option<int> Threads { get; } = new("--threads") { Description = "CPU threads of a run.", DefaultValueFactory = _ => _defaults.Threads };
        public Option<string> SelfEvaluationForm { get; } = new("--self-evaluation-form")
        {
            Description = "Stage 1 of the -se settings: label-rationale (the paper's: the verdict as label, the analysis as rationale, weighted by --alpha) or whole (the whole evaluation as one output).",
            DefaultValueFactory = _ => _defaults.SelfEvaluationForm,
        };
        public Option<string> Budget { get; } = new("--budget") { Description = "Steps of the -se settings: extra (the paper's: --self-evaluation-steps on top of --steps) or matched (both stages share --steps).", DefaultValueFactory = _ => _defaults.Budget };
        public Option<int> Cots { get; } = new("--cots") { Description = "Chains of thought per question to learn from, the first in sample order; 0 takes all.", DefaultValueFactory = _ => _defaults.Cots };
        public Option<string> Rationales { get; } = new("--rationales")
        {
            Description = "With --labels gt: all (the paper's: every chain of thought is a rationale for the gold answer, every self-evaluation kept) or consistent (only chains that reach the gold answer and evaluations whose verdict agrees with it).",
            DefaultValueFactory = _ => _defaults.Rationales,
        };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Data, Test, Alpha, Steps, SelfEvaluationSteps, BatchSize, LearningRate, SequenceLength, EvalInterval, ValidationFraction, TokenizerVocab, Threads, Rationales, SelfEvaluationForm, Budget, Cots })
            {
                command.Options.Add(option);
            }
        }

        public StudentOptions Read(ParseResult parse) => _defaults with
        {
            Alpha = parse.GetValue(Alpha),
            Steps = parse.GetValue(Steps),
            SelfEvaluationSteps = parse.GetValue(SelfEvaluationSteps),
            BatchSize = parse.GetValue(BatchSize),
            LearningRate = parse.GetValue(LearningRate),
            SequenceLength = parse.GetValue(SequenceLength),
            EvalInterval = parse.GetValue(EvalInterval),
            ValidationFraction = parse.GetValue(ValidationFraction),
            TokenizerVocab = parse.GetValue(TokenizerVocab),
            Threads = parse.GetValue(Threads),
            Rationales = parse.GetValue(Rationales)!,
            SelfEvaluationForm = parse.GetValue(SelfEvaluationForm)!,
            Budget = parse.GetValue(Budget)!,
            Cots = parse.GetValue(Cots),
        };
    }

    internal static IProgress<StudentProgress> Reporter(TextWriter error) => new SynchronousProgress<StudentProgress>(p =>
    {
        if (p.ValidationAccuracy is { } accuracy)
        {
            error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"stage {p.Stage} step {p.Step}/{p.Steps} loss {p.Loss:F4} validation accuracy {accuracy:P1}"));
        }
        else if (p.Step % 100 == 0 || p.Step == p.Steps)
        {
            error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"stage {p.Stage} step {p.Step}/{p.Steps} loss {p.Loss:F4}"));
        }
    });

    internal static string Summary(StudentMetrics m)
    {
        var own = m.TestRationaleAccuracy is { } r ? string.Create(CultureInfo.InvariantCulture, $", own rationales {r:P1}") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{m.Options.Setting} ({m.Options.Labels}, {m.Options.Student}, seed {m.Options.Seed}): best step {m.BestStep}, validation {m.ValidationAccuracy:P1}, test accuracy {m.TestAccuracy:P1}{own}; {m.TrainTokensPerSecond:F0} training tokens/s");
    }

    public static Command CreateArithmetic()
    {
        var defaults = new ArithmeticProblemOptions();
        var output = new Option<string>("--out") { Description = "Folder for questions/train.jsonl, questions/test.jsonl, cots.jsonl, evaluations.jsonl and manifest.json; replaced atomically.", Required = true };
        var train = new Option<int>("--train") { Description = "Training questions.", DefaultValueFactory = _ => defaults.TrainQuestions };
        var test = new Option<int>("--test") { Description = "Test questions.", DefaultValueFactory = _ => defaults.TestQuestions };
        var cots = new Option<int>("--cots") { Description = "Chains of thought per training question.", DefaultValueFactory = _ => defaults.Cots };
        var wrong = new Option<double>("--wrong-fraction") { Description = "Share of chains of thought with a deliberate slip.", DefaultValueFactory = _ => defaults.WrongFraction };
        var seed = new Option<long>("--seed") { Description = "Seed of the generator.", DefaultValueFactory = _ => defaults.Seed };
        var command = new Command("arithmetic", "Write a generated multi-step arithmetic word-problem set with programmatic chains of thought and self-evaluations (distillation folder layout).")
        {
            output, train, test, cots, wrong, seed,
        };
        command.SetAction(parse =>
        {
            var options = new ArithmeticProblemOptions
            {
                TrainQuestions = parse.GetValue(train), TestQuestions = parse.GetValue(test), Cots = parse.GetValue(cots),
                WrongFraction = parse.GetValue(wrong), Seed = parse.GetValue(seed),
            };
            var directory = Path.GetFullPath(parse.GetValue(output)!);
            ArithmeticWordProblems.Write(directory, options);
            parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {options.TrainQuestions:N0} training questions with {options.Cots} chains of thought each and {options.TestQuestions:N0} test questions to {directory}"));
            return 0;
        });
        return command;
    }
}
