using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary>Stage 1 of the <c>-se</c> settings (verdict and analysis, or the whole evaluation), the step budget, and the number of chains of thought.</summary>
public class StudentSelfEvaluationTests
{
    private static DistilledQuestion Question(string id, string gold, params (string Answer, string Evaluation, string? Verdict)[] cots) =>
        new(new StudentQuestion(id, "question " + id, gold, null),
            [.. cots.Select((c, i) => new TeacherCot(i, $"cot {id}/{i}. The answer is {c.Answer}.", c.Answer, c.Answer == gold,
                [new TeacherEvaluation(0, c.Evaluation, c.Verdict)]))]);

    private static readonly IReadOnlyList<DistilledQuestion> _questions =
    [
        // q1: a wrong chain judged wrong, a right chain judged correct with no analysis, a right chain without a verdict.
        Question("q1", "7",
            ("5", "5 + 2 = 7, not 5. Evaluation result: the given answer is wrong.", "wrong"),
            ("7", "Evaluation result: the given answer is correct.", "correct"),
            ("7", "The steps look fine.", null)),
        // q2: a wrong chain the teacher judged correct; the analysis ends with a line break before the verdict.
        Question("q2", "3", ("4", "1 + 3 = 4 is right.\nEvaluation result: the given answer is correct.", "correct")),
    ];

    [Fact]
    public void Stage_one_examples_are_verdict_and_analysis_by_default_and_the_whole_evaluation_as_an_option()
    {
        var paper = StudentExamples.Build(_questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold);
        Assert.Equal(
        [
            new SelfEvaluationExample("q1", new("predict: question q1\nanswer: cot q1/0. The answer is 5.", "wrong"),
                new("explain: question q1\nanswer: cot q1/0. The answer is 5.", "5 + 2 = 7, not 5.")),
            // Nothing before the verdict: the label row alone.
            new SelfEvaluationExample("q1", new("predict: question q1\nanswer: cot q1/1. The answer is 7.", "correct"), null),
            // q1/2 has no verdict, so no label: left out, as in the authors' code. q2's verdict contradicts the gold answer; the paper keeps it.
            new SelfEvaluationExample("q2", new("predict: question q2\nanswer: cot q2/0. The answer is 4.", "correct"),
                new("explain: question q2\nanswer: cot q2/0. The answer is 4.", "1 + 3 = 4 is right.")),
        ], paper.SelfEvaluation);

        var whole = StudentExamples.Build(_questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold, StudentRationales.All, StudentSelfEvaluationForms.Whole);
        Assert.Equal(
        [
            new SelfEvaluationExample("q1", new("evaluate: question q1\nanswer: cot q1/0. The answer is 5.", "5 + 2 = 7, not 5. Evaluation result: the given answer is wrong."), null),
            new SelfEvaluationExample("q1", new("evaluate: question q1\nanswer: cot q1/1. The answer is 7.", "Evaluation result: the given answer is correct."), null),
            // The whole text needs no verdict.
            new SelfEvaluationExample("q1", new("evaluate: question q1\nanswer: cot q1/2. The answer is 7.", "The steps look fine."), null),
            new SelfEvaluationExample("q2", new("evaluate: question q2\nanswer: cot q2/0. The answer is 4.", "1 + 3 = 4 is right.\nEvaluation result: the given answer is correct."), null),
        ], whole.SelfEvaluation);

        // Babel's filter keeps verdicts that agree with the gold answer: q1/0 (wrong, and wrong) and q1/1 (correct, and right).
        var consistent = StudentExamples.Build(_questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold, StudentRationales.Consistent);
        Assert.Equal([paper.SelfEvaluation[0], paper.SelfEvaluation[1]], consistent.SelfEvaluation);
        // One-CoT settings evaluate the first chain only.
        var one = StudentExamples.Build(_questions, StudentSettings.CotSelfEvaluation, StudentLabels.Teacher);
        Assert.Equal([paper.SelfEvaluation[0], paper.SelfEvaluation[2]], one.SelfEvaluation);
        // Stage 2 is the same in both forms.
        Assert.Equal(paper.Distillation, whole.Distillation);

        Assert.Equal("a: b.", SelfEvaluation.Analysis(" a: b. Evaluation result: the given answer is wrong. Extra."));
        Assert.Equal("no verdict here", SelfEvaluation.Analysis("no verdict here\n"));
    }

    [Fact]
    public void The_number_of_chains_of_thought_takes_the_first_in_sample_order_for_both_stages()
    {
        IEnumerable<string?> Rationales(StudentExamples e) => e.Distillation.Select(d => d.Rationale);
        var first = StudentExamples.Build(_questions, StudentSettings.MultiCotSelfEvaluation, StudentLabels.Gold, cots: 1);
        Assert.Equal(["cot q1/0. The answer is 5.", "cot q2/0. The answer is 4."], Rationales(first));
        Assert.Equal(["q1", "q2"], first.SelfEvaluation.Select(e => e.QuestionId));
        Assert.Equal("wrong", first.SelfEvaluation[0].Label.Response);
        var two = StudentExamples.Build(_questions, StudentSettings.MultiCot, StudentLabels.Gold, cots: 2);
        Assert.Equal(["cot q1/0. The answer is 5.", "cot q1/1. The answer is 7.", "cot q2/0. The answer is 4."], Rationales(two));
        var all = StudentExamples.Build(_questions, StudentSettings.MultiCot, StudentLabels.Gold);
        Assert.Equal(4, all.Distillation.Count);
        Assert.Equal(Rationales(all).ToList(), Rationales(StudentExamples.Build(_questions, StudentSettings.MultiCot, StudentLabels.Gold, cots: 9)).ToList());
        // The teacher's label of q1 with one chain is that chain's (wrong) answer.
        Assert.Equal(["5", "4"], StudentExamples.Build(_questions, StudentSettings.MultiCot, StudentLabels.Teacher, cots: 1).Distillation.Select(e => e.Label));
        Assert.Contains("--cots must be zero", Assert.Throws<UserInputException>(() => new StudentOptions { Cots = -1 }.Validate()).Message);
    }

    [Theory]
    [InlineData(StudentSelfEvaluationForms.LabelRationale)]
    [InlineData(StudentSelfEvaluationForms.Whole)]
    public void The_first_stage_one_loss_is_the_alpha_weighted_loss_of_its_rows_computed_plainly(string form)
    {
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(StudentTrainingTests.SmallSet(scratch, train: 30, test: 8, cots: 2));
        var pretrained = scratch.Combine("pretrained");
        var texts = corpus.Train.SelectMany(q => q.Cots.SelectMany(c => c.Evaluations.Select(e => e.Evaluation).Append(c.Cot)).Append(q.Question.Question))
            .Append("predict: explain: evaluate: answer: correct wrong");
        var bpe = ByteLevelBpeTrainer.Train(texts, 300);
        bpe.Save(pretrained);
        var config = ModelPresets.Create("micro", bpe.VocabSize, 0, 1, 2) with { NumHiddenLayers = 1 };
        using (var initial = new CausalLanguageModel(config))
        {
            initial.InitializeWeights(5);
            ModelCheckpoint.Save(pretrained, config, initial.StateDict());
        }

        // The stage-1 rows written out from the data: every chain's evaluation, verdict and analysis cut at "Evaluation result:".
        const double Alpha = 0.3;
        var (train, _) = corpus.Split(StudentTrainingTests.Quick.ValidationFraction);
        using var tokenizer = HuggingFaceTokenizer.Load(pretrained);
        var labels = new List<TokenizedInstruction>();
        var rationales = new List<TokenizedInstruction>();
        foreach (var question in train)
        {
            foreach (var cot in question.Cots)
            {
                var input = question.Question.Question + "\nanswer: " + cot.Cot;
                var text = Assert.Single(cot.Evaluations).Evaluation;
                if (form == StudentSelfEvaluationForms.Whole)
                {
                    labels.Add(InstructionTuning.Tokenize(tokenizer, new InstructionExample("evaluate: " + input, text)));
                    continue;
                }
                var cut = text.IndexOf("Evaluation result:", StringComparison.Ordinal);
                labels.Add(InstructionTuning.Tokenize(tokenizer, new InstructionExample("predict: " + input, cot.Correct ? "correct" : "wrong")));
                if (cut > 0) rationales.Add(InstructionTuning.Tokenize(tokenizer, new InstructionExample("explain: " + input, text[..cut].Trim())));
            }
        }
        double expected;
        using (var model = CausalLanguageModel.Load(pretrained))
        {
            expected = form == StudentSelfEvaluationForms.Whole
                ? StudentTrainingTests.NaiveMeanLoss(model, labels)
                : Alpha * StudentTrainingTests.NaiveMeanLoss(model, labels) + (1 - Alpha) * StudentTrainingTests.NaiveMeanLoss(model, rationales);
        }

        // One batch of every stage-1 example: the loss of the first step is taken before any update.
        var options = StudentTrainingTests.Quick with
        {
            Student = pretrained, Setting = StudentSettings.MultiCotSelfEvaluation, SelfEvaluationForm = form, Alpha = Alpha,
            BatchSize = labels.Count, SelfEvaluationSteps = 1, Steps = 1, EvalInterval = 1, MaxRationaleTokens = 0,
        };
        double? first = null;
        var (metrics, _) = StudentTrainer.Train(corpus, options, scratch.Combine("work"), new SynchronousProgress<StudentProgress>(p =>
        {
            if (p.Stage == 1 && p.Step == 1) first = p.Loss;
        }));
        Assert.Equal(labels.Count, metrics.SelfEvaluationExamples);
        Assert.NotNull(first);
        Assert.Equal(expected, first.Value, 4);
    }

    [Fact]
    public void A_matched_budget_gives_an_se_setting_the_total_steps_of_the_setting_without_it()
    {
        var cot = new StudentOptions { Setting = StudentSettings.Cot, Steps = 30, SelfEvaluationSteps = 10 }.Validate();
        var extra = cot with { Setting = StudentSettings.CotSelfEvaluation };
        var matched = extra with { Budget = StudentBudgets.Matched };
        Assert.Equal((0, 30, 30), (cot.SelfEvaluationStageSteps, cot.DistillationStageSteps, cot.TotalSteps));
        var cotMatched = cot with { Budget = StudentBudgets.Matched };
        Assert.Equal((0, 30, 30), (cotMatched.SelfEvaluationStageSteps, cotMatched.DistillationStageSteps, cotMatched.TotalSteps));
        Assert.Equal((10, 30, 40), (extra.SelfEvaluationStageSteps, extra.DistillationStageSteps, extra.TotalSteps));
        Assert.Equal((10, 20, 30), (matched.SelfEvaluationStageSteps, matched.DistillationStageSteps, matched.TotalSteps));
        Assert.Contains("must exceed --self-evaluation-steps", Assert.Throws<UserInputException>(() => (matched with { Steps = 10 }).Validate()).Message);
        Assert.Contains("Unknown step budget", Assert.Throws<UserInputException>(() => (matched with { Budget = "same" }).Validate()).Message);

        // A run trains exactly those steps in each stage, and the report says which budget its -se rows used.
        using var scratch = new ScratchFolder();
        var corpus = StudentCorpus.Load(StudentTrainingTests.SmallSet(scratch));
        var trained = new Dictionary<int, int> { [1] = 0, [2] = 0 };
        var options = StudentTrainingTests.Quick with { Setting = StudentSettings.CotSelfEvaluation, Budget = StudentBudgets.Matched, Steps = 20, SelfEvaluationSteps = 6 };
        var (metrics, _) = StudentTrainer.Train(corpus, options, scratch.Combine("matched"), new SynchronousProgress<StudentProgress>(p =>
        {
            if (p.ValidationAccuracy is null) trained[p.Stage]++;
        }));
        Assert.Equal(6, trained[1]);
        Assert.Equal(14, trained[2]);
        Assert.Equal([10, 14], metrics.Evaluations.Select(e => e.Step));
        var markdown = StudentGridReport.From([metrics]).Markdown();
        Assert.Contains("| 6 + 14 (matched) |", markdown);
        Assert.Contains("budget matched", markdown);
        Assert.DoesNotContain("budget extra", markdown);
    }
}
