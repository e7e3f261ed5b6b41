using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.UnitTests.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Distillation;

/// <summary>The student side of self-evaluation distillation: data, examples, loss, resume and bad input.</summary>
public partial class StudentTrainingTests
{
    /// <summary>Options small enough for a test: a few seconds per run.</summary>
    internal static readonly StudentOptions Quick = new()
    {
        Steps = 20, SelfEvaluationSteps = 10, EvalInterval = 10, BatchSize = 8, Threads = 1, TokenizerVocab = 320, MaxRationaleTokens = 24,
    };

    internal static string SmallSet(ScratchFolder scratch, int train = 120, int test = 40, int cots = 2)
    {
        var folder = scratch.Combine("arith");
        ArithmeticWordProblems.Write(folder, new ArithmeticProblemOptions { TrainQuestions = train, TestQuestions = test, Cots = cots, Seed = 3 });
        return folder;
    }

    [Fact]
    public void Generated_problems_are_solved_by_their_wording_and_every_chain_and_evaluation_agrees_with_the_answer()
    {
        using var scratch = new ScratchFolder();
        var folder = SmallSet(scratch, train: 400, test: 100, cots: 4);
        var corpus = StudentCorpus.Load(folder);
        Assert.Equal("math", corpus.Task);
        Assert.Equal(400, corpus.Train.Count);
        Assert.Equal(100, corpus.Test.Count);
        // An independent reading of the wording: the start, then each verb as + or −.
        foreach (var question in corpus.Train.Select(q => q.Question).Concat(corpus.Test))
        {
            Assert.Equal(question.Gold, Solve(question.Question).ToString(CultureInfo.InvariantCulture));
        }
        var cots = corpus.Train.SelectMany(q => q.Cots).ToList();
        Assert.Equal(1600, cots.Count);
        var wrong = cots.Count(c => !c.Correct);
        Assert.InRange(wrong, 1600 * 0.18, 1600 * 0.32);
        foreach (var cot in cots)
        {
            Assert.NotNull(cot.Answer);
            var evaluation = Assert.Single(cot.Evaluations);
            Assert.Equal(cot.Correct ? "correct" : "wrong", evaluation.Label);
            // Every equation the chain writes is true exactly when the chain is right.
            var equations = Equation().Matches(cot.Cot).Select(m => (A: int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Op: m.Groups[2].Value,
                B: int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), C: int.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture))).ToList();
            Assert.NotEmpty(equations);
            var allTrue = equations.All(e => e.C == e.Op switch { "x" => e.A * e.B, "+" => e.A + e.B, _ => e.A - e.B });
            Assert.Equal(cot.Correct, allTrue);
        }
        var trainTexts = corpus.Train.Select(q => q.Question.Question).ToHashSet();
        Assert.DoesNotContain(corpus.Test, q => trainTexts.Contains(q.Question));
    }

    private static int Solve(string question)
    {
        var boxes = Boxes().Match(question);
        var value = boxes.Success ? int.Parse(boxes.Groups[1].Value, CultureInfo.InvariantCulture) * int.Parse(boxes.Groups[2].Value, CultureInfo.InvariantCulture)
            : int.Parse(Start().Match(question).Groups[1].Value, CultureInfo.InvariantCulture);
        foreach (Match action in Action().Matches(question))
        {
            var amount = int.Parse(action.Groups[2].Value, CultureInfo.InvariantCulture);
            value += action.Groups[1].Value is "buys" or "finds" or "gets" or "picks up" or "receives" or "wins" ? amount : -amount;
        }
        return value;
    }

    [GeneratedRegex(@"has (\d+) boxes with (\d+)")]
    private static partial Regex Boxes();

    [GeneratedRegex(@"has (\d+) ")]
    private static partial Regex Start();

    [GeneratedRegex(@"(buys|finds|gets|picks up|receives|wins|gives away|gives|loses|sells|uses|drops) (\d+)")]
    private static partial Regex Action();

    [GeneratedRegex(@"(-?\d+) (x|\+|-) (\d+) = (-?\d+)")]
    private static partial Regex Equation();

    private static DistilledQuestion Question(string id, string gold, params (string? Answer, string[] Verdicts)[] cots) =>
        new(new StudentQuestion(id, "question " + id, gold, null),
            [.. cots.Select((c, i) => new TeacherCot(i, $"cot {id}/{i}. The answer is {c.Answer}.", c.Answer, c.Answer == gold,
                [.. c.Verdicts.Select((v, k) => new TeacherEvaluation(k, $"evaluation {id}/{i}/{k}", v == "?" ? null : v))]))]);

    [Fact]
    public void Examples_follow_the_setting_and_the_label_source()
    {
        IReadOnlyList<DistilledQuestion> questions =
        [
            // q1: first chain wrong, then two right ones.
            Question("q1", "7", ("5", ["wrong", "correct"]), ("7", ["correct"]), ("7", ["?"])),
            // q2: no chain reaches the gold answer.
            Question("q2", "3", ("4", ["correct"])),
            // q3: the teacher never gave a readable answer.
            Question("q3", "9", (null, ["uncertain"])),
        ];
        var standardGold = StudentExamples.Build(questions, StudentSettings.Standard, StudentLabels.Gold);
        Assert.Equal(["7", "3", "9"], standardGold.Distillation.Select(e => e.Label));
        Assert.All(standardGold.Distillation, e => Assert.Null(e.Rationale));
        Assert.Empty(standardGold.SelfEvaluation);

        var standardTeacher = StudentExamples.Build(questions, StudentSettings.Standard, StudentLabels.Teacher);
        Assert.Equal(["5", "4"], standardTeacher.Distillation.Select(e => e.Label));
        Assert.Equal(1, standardTeacher.QuestionsWithoutLabel);

        var cotGold = StudentExamples.Build(questions, StudentSettings.Cot, StudentLabels.Gold, StudentRationales.Consistent);
        Assert.Equal(["cot q1/1. The answer is 7.", null, null], cotGold.Distillation.Select(e => e.Rationale));
        Assert.Equal(2, cotGold.QuestionsWithoutRationale);

        var cotTeacher = StudentExamples.Build(questions, StudentSettings.Cot, StudentLabels.Teacher);
        Assert.Equal([("5", "cot q1/0. The answer is 5."), ("4", "cot q2/0. The answer is 4.")], cotTeacher.Distillation.Select(e => (e.Label, e.Rationale!)));

        var multiGold = StudentExamples.Build(questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold, StudentRationales.Consistent, StudentSelfEvaluationForms.Whole);
        Assert.Equal(["q1", "q1", "q2", "q3"], multiGold.Distillation.Select(e => e.QuestionId));
        // gt keeps verdicts that match the gold answer: q1/0 is wrong, q1/1 right; q2/0's "correct" contradicts gold; q3's uncertain goes.
        Assert.Equal(["evaluation q1/0/0", "evaluation q1/1/0"], multiGold.SelfEvaluation.Select(e => e.Label.Response));

        // The paper's (the default): with gold labels every chain is a rationale for the gold answer, every evaluation kept.
        var cotGoldAll = StudentExamples.Build(questions, StudentSettings.Cot, StudentLabels.Gold);
        Assert.Equal([("7", "cot q1/0. The answer is 5."), ("3", "cot q2/0. The answer is 4."), ("9", "cot q3/0. The answer is .")], cotGoldAll.Distillation.Select(e => (e.Label, e.Rationale!)));
        Assert.Equal(0, cotGoldAll.QuestionsWithoutRationale);
        var multiGoldAll = StudentExamples.Build(questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold, StudentRationales.All, StudentSelfEvaluationForms.Whole);
        Assert.Equal(["q1", "q1", "q1", "q2", "q3"], multiGoldAll.Distillation.Select(e => e.QuestionId));
        Assert.All(multiGoldAll.Distillation, e => Assert.Equal(questions.Single(q => q.Question.Id == e.QuestionId).Question.Gold, e.Label));
        Assert.Equal(["evaluation q1/0/0", "evaluation q1/0/1", "evaluation q1/1/0", "evaluation q1/2/0", "evaluation q2/0/0", "evaluation q3/0/0"],
            multiGoldAll.SelfEvaluation.Select(e => e.Label.Response));

        var multiTeacher = StudentExamples.Build(questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Teacher, StudentRationales.All, StudentSelfEvaluationForms.Whole);
        Assert.Equal(["5", "7", "7", "4"], multiTeacher.Distillation.Select(e => e.Label));
        Assert.Equal(["evaluation q1/0/0", "evaluation q1/0/1", "evaluation q1/1/0", "evaluation q2/0/0", "evaluation q3/0/0"], multiTeacher.SelfEvaluation.Select(e => e.Label.Response));

        var oneSelfEvaluation = StudentExamples.Build(questions, StudentSettings.CotSelfEvaluation, StudentLabels.Teacher, StudentRationales.All, StudentSelfEvaluationForms.Whole);
        Assert.Equal(["evaluation q1/0/0", "evaluation q1/0/1", "evaluation q2/0/0", "evaluation q3/0/0"], oneSelfEvaluation.SelfEvaluation.Select(e => e.Label.Response));
    }

    [Fact]
    public void The_objective_weights_the_answer_and_rationale_losses_as_a_naive_loop_does()
    {
        using var model = TinyModels.Create(TinyModels.Config());
        TokenizedInstruction Row(int promptLength, params long[] tokens) => new(tokens, promptLength);
        IReadOnlyList<TokenizedInstruction> labels = [Row(3, 1, 5, 6, 7, 2), Row(2, 1, 9, 8, 2)];
        IReadOnlyList<TokenizedInstruction> rationales = [Row(3, 1, 11, 12, 13, 14, 15, 2), Row(4, 1, 20, 21, 22, 23, 2)];
        const long pad = 0;
        foreach (var alpha in new[] { 0.5, 0.2, 1.0 })
        {
            using var scope = NewDisposeScope();
            var objective = StudentTrainer.Objective(model, labels, rationales, alpha, pad).item<float>();
            var expected = alpha * NaiveMeanLoss(model, labels) + (1 - alpha) * NaiveMeanLoss(model, rationales);
            Assert.Equal(expected, objective, 4);
        }
        using var noRationale = StudentTrainer.Objective(model, labels, [], 0.3, pad);
        Assert.Equal(0.3 * NaiveMeanLoss(model, labels), noRationale.item<float>(), 4);
    }

    /// <summary>Mean of −log p(next token) over the output tokens (after the prompt) of each row, one row at a time without padding.</summary>
    internal static double NaiveMeanLoss(Babel.Modeling.Transformer.CausalLanguageModel model, IReadOnlyList<TokenizedInstruction> rows)
    {
        double total = 0;
        var count = 0;
        using var guard = no_grad();
        foreach (var row in rows)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(row.Tokens[..^1], [1, row.Tokens.Length - 1]))[0];
            for (var t = row.PromptLength - 1; t < row.Tokens.Length - 1; t++)
            {
                var values = logits[t].data<float>().ToArray();
                var max = values.Max();
                var logSum = max + Math.Log(values.Sum(v => Math.Exp(v - max)));
                total += logSum - values[(int)row.Tokens[t + 1]];
                count++;
            }
        }
        return total / count;
    }

    [Fact]
    public void A_killed_two_stage_run_resumes_to_the_same_weights_and_metrics()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(SmallSet(scratch));
        var options = Quick with { Setting = StudentSettings.MultiCotSelfEvaluation, Steps = 40 };
        var (whole, _) = StudentTrainer.Train(corpus, options, scratch.Combine("whole"));

        foreach (var (stage, step) in new[] { (1, 5), (2, 20) })
        {
            var work = scratch.Combine($"killed-{stage}");
            using (var cancellation = new CancellationTokenSource())
            {
                var progress = new SynchronousProgress<StudentProgress>(p =>
                {
                    if (p.Stage == stage && p.Step == step) cancellation.Cancel();
                });
                Assert.ThrowsAny<OperationCanceledException>(() => StudentTrainer.Train(corpus, options, work, progress, cancellationToken: cancellation.Token));
            }
            var (resumed, _) = StudentTrainer.Train(corpus, options, work);
            Assert.Equal(Json(whole with { TrainTokensPerSecond = 0 }), Json(resumed with { TrainTokensPerSecond = 0 }));
            AssertSameWeights(Path.Combine(scratch.Combine("whole"), StudentTrainer.DistillationFolder), Path.Combine(work, StudentTrainer.DistillationFolder));
            AssertSameWeights(Path.Combine(scratch.Combine("whole"), StudentTrainer.DistillationFolder, StudentTrainer.BestFolder),
                Path.Combine(work, StudentTrainer.DistillationFolder, StudentTrainer.BestFolder));
        }
        // A rerun with another setting or α in the same folder is refused, not resumed.
        foreach (var other in new[] { options with { Setting = StudentSettings.MultiCot }, options with { Alpha = 0.3 } })
        {
            var refused = Assert.Throws<UserInputException>(() => StudentTrainer.Train(corpus, other, scratch.Combine("whole")));
            Assert.Contains("other options", refused.Message);
        }
        Assert.Equal(4, whole.Evaluations.Count);
        Assert.Equal(whole.Evaluations.OrderByDescending(e => e.Accuracy).ThenBy(e => e.Step).First().Step, whole.BestStep);
    }

    private static string Json(StudentMetrics metrics) => JsonSerializer.Serialize(metrics);

    private static void AssertSameWeights(string a, string b)
    {
        using var left = ModelCheckpoint.Load(a);
        using var right = ModelCheckpoint.Load(b);
        Assert.Equal(left.Tensors.Keys.Order(), right.Tensors.Keys.Order());
        foreach (var (name, tensor) in left.Tensors) Assert.True(tensor.eq(right.Tensors[name]).all().item<bool>(), $"{name} differs in {b}");
    }

    [Fact]
    public void Bad_input_is_one_clear_sentence()
    {
        using var scratch = new ScratchFolder();
        var folder = SmallSet(scratch);

        var notDistillation = Assert.Throws<UserInputException>(() => StudentCorpus.Load(scratch.Path));
        Assert.Contains("is not a distillation folder", notDistillation.Message);

        // A test split of another task: multiple-choice letters for a math corpus.
        var choices = scratch.Combine("choice.jsonl");
        File.WriteAllText(choices, """{"id": "c1", "question": "Where?", "answer": "b", "choices": ["x", "y"]}""" + "\n");
        var otherTask = Assert.Throws<UserInputException>(() => StudentCorpus.Load(folder, "jsonl:" + choices));
        Assert.Contains("is not a math answer", otherTask.Message);

        var trainAsTest = Assert.Throws<UserInputException>(() => StudentCorpus.Load(folder, "jsonl:" + Path.Combine(folder, "questions", "train.jsonl")));
        Assert.Contains("also in the distillation data", trainAsTest.Message);

        var corpus = StudentCorpus.Load(folder);
        Assert.Contains("--alpha must lie in [0, 1]", Assert.Throws<UserInputException>(() => (Quick with { Alpha = 1.5 }).Validate()).Message);
        Assert.Contains("Unknown setting", Assert.Throws<UserInputException>(() => (Quick with { Setting = "cot-2" }).Validate()).Message);
        Assert.Contains("both splits need questions", Assert.Throws<UserInputException>(() => corpus.Split(1e-9)).Message);

        var broken = scratch.Combine("broken");
        Directory.CreateDirectory(broken);
        foreach (var file in Directory.GetFiles(folder)) File.Copy(file, Path.Combine(broken, Path.GetFileName(file)));
        File.AppendAllText(Path.Combine(broken, DistillationFiles.Cots), "{\"id\": \"x\", \"question_id\": \"x\", \"question\": \"caf\u00e9 ");
        using (var stream = File.Open(Path.Combine(broken, DistillationFiles.Cots), FileMode.Append)) stream.Write([0xC3, 0x28, 0x0A]);
        var invalid = Assert.Throws<UserInputException>(() => StudentCorpus.Load(broken, "jsonl:" + Path.Combine(folder, "questions", "test.jsonl")));
        Assert.Contains("line 241", invalid.Message);

        // An empty training split, and an empty test split.
        var empty = scratch.Combine("empty");
        Directory.CreateDirectory(empty);
        File.Copy(Path.Combine(folder, DistillationFiles.Manifest), Path.Combine(empty, DistillationFiles.Manifest));
        File.WriteAllText(Path.Combine(empty, DistillationFiles.Cots), "\n");
        Assert.Contains("holds no chain of thought", Assert.Throws<UserInputException>(() => StudentCorpus.Load(empty, "jsonl:" + Path.Combine(folder, "questions", "test.jsonl"))).Message);
        var emptyTest = scratch.Combine("empty-test.jsonl");
        File.WriteAllText(emptyTest, "");
        Assert.Contains("holds no records", Assert.Throws<UserInputException>(() => StudentCorpus.Load(folder, "jsonl:" + emptyTest)).Message);

        var noSelfEvaluation = StudentCorpus.Load(folder) with
        {
            Train = [.. corpus.Train.Select(q => q with { Cots = [.. q.Cots.Select(c => c with { Evaluations = [] })] })],
        };
        var message = Assert.Throws<UserInputException>(() => StudentTrainer.Train(noSelfEvaluation, Quick with { Setting = StudentSettings.CotSelfEvaluation }, scratch.Combine("w"))).Message;
        Assert.Contains("holds no self-evaluation", message);
    }

    [Fact]
    public void Distill_train_writes_metrics_predictions_and_a_student_that_generates()
    {
        using var scratch = new ScratchFolder();
        var folder = SmallSet(scratch);
        var output = scratch.Combine("run");
        var (code, stdout, stderr) = CliRun.Run("distill", "train", "--data", folder, "--setting", "cot", "--steps", "20", "--eval-interval", "10",
            "--batch-size", "8", "--threads", "1", "--tokenizer-vocab", "320", "--out", output);
        Assert.True(code == 0, stderr);
        Assert.Contains("test accuracy", stdout);
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, StudentTrainer.MetricsFile)));
        Assert.Equal("cot", metrics.RootElement.GetProperty("options").GetProperty("setting").GetString());
        var predictions = File.ReadAllLines(Path.Combine(output, StudentTrainer.PredictionsFile));
        Assert.Equal(40, predictions.Length);
        var correct = predictions.Count(l => JsonDocument.Parse(l).RootElement.GetProperty("correct").GetBoolean());
        Assert.Equal(correct / 40.0, metrics.RootElement.GetProperty("test_accuracy").GetDouble(), 9);
        var (generated, text, error) = CliRun.Run("generate", "--model", Path.Combine(output, "model"), "--prompt", "predict: Ana has 3 apples.", "--max-new-tokens", "4", "--seed", "1");
        Assert.True(generated == 0, error);
        Assert.False(string.IsNullOrEmpty(text));

        var (bad, _, badError) = CliRun.Run("distill", "train", "--data", folder, "--alpha", "-0.1", "--out", scratch.Combine("bad"));
        Assert.Equal(2, bad);
        Assert.Contains("--alpha must lie in [0, 1]", badError);
        Assert.False(Directory.Exists(scratch.Combine("bad")));
    }

    [Fact]
    public void A_student_starts_from_a_Babel_model_folder_with_its_tokenizer()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(SmallSet(scratch));
        var pretrained = scratch.Combine("pretrained");
        var bpe = Babel.Modeling.Tokenization.ByteLevelBpeTrainer.Train(corpus.Train.Select(q => q.Question.Question), 300);
        bpe.Save(pretrained);
        var config = ModelPresets.Create("micro", bpe.VocabSize, 0, 1, 2) with { NumHiddenLayers = 1 };
        using (var model = new Babel.Modeling.Transformer.CausalLanguageModel(config))
        {
            model.InitializeWeights(11);
            ModelCheckpoint.Save(pretrained, config, model.StateDict());
        }
        // A learning rate this small leaves the weights where they started: the folder's, not a fresh initialisation.
        var options = Quick with { Student = pretrained, Setting = StudentSettings.Cot, Steps = 10, LearningRate = 1e-12 };
        var (metrics, _) = StudentTrainer.Train(corpus, options, scratch.Combine("work"));
        Assert.StartsWith("model:", metrics.StudentSource);
        using var start = ModelCheckpoint.Load(pretrained);
        using var best = ModelCheckpoint.Load(Path.Combine(scratch.Combine("work"), StudentTrainer.DistillationFolder, StudentTrainer.BestFolder));
        foreach (var (name, tensor) in start.Tensors) Assert.True(tensor.allclose(best.Tensors[name], rtol: 0, atol: 1e-6), $"{name} moved");
        Assert.False(Directory.Exists(Path.Combine(scratch.Combine("work"), StudentTrainer.TokenizerFolder)));

        var tooShort = Quick with { Student = pretrained, SequenceLength = 4096 };
        Assert.Contains("lower --sequence-length", Assert.Throws<UserInputException>(() => StudentTrainer.Train(corpus, tooShort, scratch.Combine("w2"))).Message);
    }

    [Fact]
    public void Training_reports_its_tokens_and_steps_to_the_distillation_meter()
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(SmallSet(scratch));
        long tokens = 0, steps = 0;
        // The instruments exist before the listener starts, so it is told of them.
        var (tokenCounter, stepCounter) = (DistillationMetrics.StudentTokens, DistillationMetrics.StudentSteps);
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument == tokenCounter || instrument == stepCounter) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument == tokenCounter) Interlocked.Add(ref tokens, value);
            else Interlocked.Add(ref steps, value);
        });
        listener.Start();
        var (metrics, _) = StudentTrainer.Train(corpus, Quick with { Setting = StudentSettings.CotSelfEvaluation }, scratch.Combine("work"));
        listener.Dispose();
        // Other tests may train at the same time and add to the same counters: at least this run's counts arrive.
        Assert.True(Interlocked.Read(ref tokens) >= metrics.TrainTokens, $"{tokens} tokens counted, the run trained {metrics.TrainTokens}");
        Assert.True(Interlocked.Read(ref steps) >= Quick.Steps + Quick.SelfEvaluationSteps);
    }
}
