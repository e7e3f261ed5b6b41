using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>Settings of a generated arithmetic word-problem set; every value is recorded in its manifest.</summary>
public sealed record ArithmeticProblemOptions
{
    public int TrainQuestions { get; init; } = 2000;
    public int TestQuestions { get; init; } = 500;
    /// <summary>Chains of thought per training question, each worded its own way.</summary>
    public int Cots { get; init; } = 4;
    /// <summary>Share of chains of thought with a deliberate slip in one step, so self-evaluation has wrong answers to find.</summary>
    public double WrongFraction { get; init; } = 0.25;
    public long Seed { get; init; } = 1;

    public ArithmeticProblemOptions Validate()
    {
        if (TrainQuestions <= 0 || TestQuestions <= 0) throw new UserInputException($"--train and --test must be positive (got {TrainQuestions} and {TestQuestions}).");
        if (Cots <= 0) throw new UserInputException($"--cots must be positive (got {Cots}).");
        if (!(WrongFraction >= 0 && WrongFraction <= 1)) throw new UserInputException($"--wrong-fraction must lie in [0, 1] (got {WrongFraction}).");
        return this;
    }
}

/// <summary>One step of a word problem: the operation, its operand and the running value before and after it.</summary>
public sealed record ArithmeticStep(char Operation, int Operand, int Before, int After);

/// <summary>A generated problem: its wording and the steps that solve it.</summary>
public sealed record ArithmeticProblem(string Id, string Question, IReadOnlyList<ArithmeticStep> Steps, int Answer);

/// <summary>
/// A multi-step arithmetic word-problem set on which a tiny student learns in minutes: a start (a count, or boxes times
/// items per box) followed by one to three additions or subtractions, each worded by one of several verbs, so that
/// knowing which verb means which operation is part of the task. The "teacher" is a program: each training question gets
/// <see cref="ArithmeticProblemOptions.Cots"/> chains of thought worded differently, some with a deliberate slip in one
/// step carried to the end, and one self-evaluation per chain that checks every step. The folder has the layout of
/// <c>babel distill generate</c>'s output, so every student setting trains on it unchanged.
/// </summary>
public static class ArithmeticWordProblems
{
    public const string QuestionsFolder = "questions";

    private static readonly (string Name, string Pronoun)[] _people =
    [
        ("Ana", "She"), ("Ben", "He"), ("Chen", "He"), ("Dara", "She"), ("Eli", "He"), ("Fatima", "She"), ("Gus", "He"), ("Hana", "She"),
        ("Ivan", "He"), ("Jo", "She"), ("Kofi", "He"), ("Lena", "She"), ("Mia", "She"), ("Noor", "She"), ("Omar", "He"), ("Pia", "She"),
    ];
    private static readonly string[] _items = ["apples", "marbles", "stamps", "books", "shells", "pencils", "stickers", "cards", "coins", "eggs", "cookies", "beads"];
    private static readonly string[] _friends = ["a friend", "a brother", "a sister", "a neighbour", "the teacher", "a cousin"];
    private static readonly string[] _addVerbs = ["buys {0} more", "finds {0} more", "gets {0} more from {1}", "picks up {0} more", "receives {0} more", "wins {0} more"];
    private static readonly string[] _subtractVerbs = ["gives {0} to {1}", "loses {0}", "sells {0}", "uses {0}", "gives away {0}", "drops {0}"];

    /// <summary>Writes <c>questions/train.jsonl</c>, <c>questions/test.jsonl</c>, <c>cots.jsonl</c>, <c>evaluations.jsonl</c>, <c>failures.jsonl</c> and <c>manifest.json</c>, replacing the folder atomically.</summary>
    public static void Write(string outDirectory, ArithmeticProblemOptions options)
    {
        options.Validate();
        var random = new Random(unchecked((int)(options.Seed * 7919 + 17)));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var train = Problems("train", options.TrainQuestions, random, seen);
        var test = Problems("test", options.TestQuestions, random, seen);
        var cots = new List<CotRecord>();
        var evaluations = new List<EvaluationRecord>();
        foreach (var problem in train)
        {
            for (var sample = 0; sample < options.Cots; sample++)
            {
                var wrong = random.NextDouble() < options.WrongFraction;
                var (cot, evaluation) = wrong ? WrongChain(problem, sample, random) : (Chain(problem, problem.Steps, sample), Check(problem.Steps, problem.Steps));
                var answer = AnswerParser.ParsePrediction(DistillationTask.Math, cot);
                var gold = problem.Answer.ToString(CultureInfo.InvariantCulture);
                var cotId = $"{problem.Id}/cot{sample}";
                cots.Add(new CotRecord(cotId, problem.Id, sample, problem.Question, null, cot, answer, gold, gold, answer == gold, Key(cot)));
                evaluations.Add(new EvaluationRecord($"{cotId}/eval0", cotId, problem.Id, sample, 0, evaluation, SelfEvaluation.Parse(evaluation)?.Name(), Key(evaluation)));
            }
        }
        var lines = DistillationFolder.Lines;
        AtomicFile.WriteDirectory(Path.GetFullPath(outDirectory), temporary =>
        {
            Directory.CreateDirectory(Path.Combine(temporary, QuestionsFolder));
            File.WriteAllText(Path.Combine(temporary, QuestionsFolder, "train.jsonl"), Questions(train));
            File.WriteAllText(Path.Combine(temporary, QuestionsFolder, "test.jsonl"), Questions(test));
            File.WriteAllText(Path.Combine(temporary, DistillationFiles.Cots), string.Concat(cots.Select(c => JsonSerializer.Serialize(c, lines) + "\n")));
            File.WriteAllText(Path.Combine(temporary, DistillationFiles.Evaluations), string.Concat(evaluations.Select(e => JsonSerializer.Serialize(e, lines) + "\n")));
            File.WriteAllText(Path.Combine(temporary, DistillationFiles.Failures), "");
            var correct = cots.Count(c => c.Correct == true);
            new DistillationManifest
            {
                Teacher = new TeacherManifest { Kind = "programmatic", Generator = "arithmetic word problems", WrongFraction = options.WrongFraction },
                Dataset = new DatasetManifest { Format = "jsonl", File = $"{QuestionsFolder}/train.jsonl", Split = "train", QuestionsInFile = train.Count, Limit = 0 },
                Task = DistillationTask.Math.Name(),
                Sampling = new SamplingManifest { Cots = options.Cots, Evaluations = 1, Seed = options.Seed },
                Seed = options.Seed,
                Counts = new CountsManifest
                {
                    Questions = train.Count, TestQuestions = test.Count, Cots = cots.Count, CotsParsed = cots.Count(c => c.Answer is not null),
                    CotsCorrect = correct, Evaluations = evaluations.Count,
                    EvaluationLabels = new EvaluationLabelCounts { Correct = evaluations.Count(e => e.Label == "correct"), Wrong = evaluations.Count(e => e.Label == "wrong") },
                },
                TeacherAccuracy = (double)correct / cots.Count,
                Files = [DistillationFiles.Cots, DistillationFiles.Evaluations, DistillationFiles.Failures, $"{QuestionsFolder}/train.jsonl", $"{QuestionsFolder}/test.jsonl"],
            }.Save(temporary);
        });
    }

    /// <summary>Problems whose wording is new to the whole set, so no test question repeats a training one.</summary>
    public static List<ArithmeticProblem> Problems(string split, int count, Random random, HashSet<string> seen)
    {
        var problems = new List<ArithmeticProblem>(count);
        while (problems.Count < count)
        {
            var problem = Problem(string.Create(CultureInfo.InvariantCulture, $"{split}-{problems.Count + 1:D5}"), random);
            if (seen.Add(problem.Question)) problems.Add(problem);
        }
        return problems;
    }

    private static ArithmeticProblem Problem(string id, Random random)
    {
        var (name, pronoun) = _people[random.Next(_people.Length)];
        var item = _items[random.Next(_items.Length)];
        var steps = new List<ArithmeticStep>();
        var text = new StringBuilder();
        int value;
        if (random.Next(3) == 0)
        {
            var boxes = random.Next(2, 7);
            var each = random.Next(2, 7);
            value = boxes * each;
            steps.Add(new ArithmeticStep('*', each, boxes, value));
            text.Append(CultureInfo.InvariantCulture, $"{name} has {boxes} boxes with {each} {item} in each.");
        }
        else
        {
            value = random.Next(3, 21);
            text.Append(CultureInfo.InvariantCulture, $"{name} has {value} {item}.");
        }
        var operations = random.Next(1, 4);
        for (var k = 0; k < operations; k++)
        {
            var subtract = value > 1 && random.Next(2) == 0;
            var operand = subtract ? random.Next(1, Math.Min(value, 12) + 1) : random.Next(1, 13);
            var after = subtract ? value - operand : value + operand;
            var verbs = subtract ? _subtractVerbs : _addVerbs;
            var verb = string.Format(CultureInfo.InvariantCulture, verbs[random.Next(verbs.Length)], operand, _friends[random.Next(_friends.Length)]);
            text.Append(' ').Append(k == 0 ? pronoun : "Then " + pronoun.ToLowerInvariant()).Append(' ').Append(verb).Append('.');
            steps.Add(new ArithmeticStep(subtract ? '-' : '+', operand, value, after));
            value = after;
        }
        text.Append(CultureInfo.InvariantCulture, $" How many {item} does {name} have now?");
        return new ArithmeticProblem(id, text.ToString(), steps, value);
    }

    /// <summary>A chain of thought through <paramref name="steps"/> (the true ones, or ones with a slip), worded by <paramref name="sample"/>.</summary>
    public static string Chain(ArithmeticProblem problem, IReadOnlyList<ArithmeticStep> steps, int sample)
    {
        var style = sample % 3;
        var parts = new List<string>();
        for (var k = 0; k < steps.Count; k++)
        {
            var s = steps[k];
            var equation = string.Create(CultureInfo.InvariantCulture, $"{s.Before} {(s.Operation == '*' ? "x" : s.Operation.ToString())} {s.Operand} = {s.After}");
            parts.Add(style switch
            {
                0 => k == 0 && s.Operation == '*' ? $"The boxes hold {equation}." : $"Then {equation}.",
                1 => k == 0 ? $"First, {equation}." : $"Next, {equation}.",
                _ => $"Step {k + 1}: {equation}.",
            });
        }
        if (steps[0].Operation != '*' && style == 0) parts.Insert(0, string.Create(CultureInfo.InvariantCulture, $"Start with {steps[0].Before}."));
        parts.Add(string.Create(CultureInfo.InvariantCulture, $"The answer is {steps[^1].After}."));
        return string.Join(' ', parts);
    }

    /// <summary>A chain with a slip in one step (a result off by one to three), carried correctly through the later steps, and its evaluation.</summary>
    private static (string Cot, string Evaluation) WrongChain(ArithmeticProblem problem, int sample, Random random)
    {
        var slip = random.Next(problem.Steps.Count);
        var offset = random.Next(1, 4) * (random.Next(2) == 0 ? -1 : 1);
        var steps = new List<ArithmeticStep>();
        var value = problem.Steps[0].Before;
        for (var k = 0; k < problem.Steps.Count; k++)
        {
            var s = problem.Steps[k];
            var after = s.Operation switch { '*' => value * s.Operand, '+' => value + s.Operand, _ => value - s.Operand };
            if (k == slip) after = after + offset >= 0 ? after + offset : after - offset;
            steps.Add(s with { Before = value, After = after });
            value = after;
        }
        return (Chain(problem, steps, sample), Check(steps, problem.Steps));
    }

    /// <summary>Checks each written step against its own inputs; the first false one makes the answer wrong.</summary>
    private static string Check(IReadOnlyList<ArithmeticStep> written, IReadOnlyList<ArithmeticStep> truth)
    {
        var text = new StringBuilder();
        foreach (var s in written)
        {
            var right = s.Operation switch { '*' => s.Before * s.Operand, '+' => s.Before + s.Operand, _ => s.Before - s.Operand };
            var op = s.Operation == '*' ? "x" : s.Operation.ToString();
            if (right != s.After)
            {
                text.Append(CultureInfo.InvariantCulture, $"{s.Before} {op} {s.Operand} is {right}, not {s.After}. Evaluation result: the given answer is wrong.");
                return text.ToString();
            }
            text.Append(CultureInfo.InvariantCulture, $"{s.Before} {op} {s.Operand} = {s.After} is right. ");
        }
        return text.Append(written[^1].After == truth[^1].After ? "Evaluation result: the given answer is correct." : "Evaluation result: the given answer is wrong.").ToString();
    }

    private static string Questions(IEnumerable<ArithmeticProblem> problems) =>
        string.Concat(problems.Select(p => JsonSerializer.Serialize(new { id = p.Id, question = p.Question, answer = p.Answer.ToString(CultureInfo.InvariantCulture) }) + "\n"));

    private static string Key(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
