using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>A distillation example: a question, the answer label the student learns to predict and, in CoT settings, the rationale it learns to explain.</summary>
public sealed record DistillationExample(string QuestionId, string Question, string Label, string? Rationale);

/// <summary>
/// A self-evaluation example (stage 1) as the student sees it: the prompt and output of its label row and, when it has
/// one, of its rationale row (see <see cref="StudentSelfEvaluationForms"/>).
/// </summary>
public sealed record SelfEvaluationExample(string QuestionId, InstructionExample Label, InstructionExample? Rationale);

/// <summary>The examples of one setting and label source, and what was left out of them.</summary>
public sealed record StudentExamples(
    IReadOnlyList<DistillationExample> Distillation, IReadOnlyList<SelfEvaluationExample> SelfEvaluation,
    int QuestionsWithoutLabel, int QuestionsWithoutRationale)
{
    /// <summary>
    /// Builds the examples of <paramref name="setting"/>. With gold labels (gt) and <paramref name="rationales"/>
    /// <see cref="StudentRationales.All"/> (the paper's), every chain of thought is a rationale for the gold label and every
    /// self-evaluation is kept; with <see cref="StudentRationales.Consistent"/> (Babel's filter) only a chain that reaches
    /// the gold answer is a rationale (a question without one is trained on its answer alone) and an evaluation whose
    /// verdict contradicts the gold answer, or has none, is left out. With the teacher's labels (llm) every chain with a
    /// readable answer is a rationale, labelled with that answer (a question without one has no label and is left out),
    /// and evaluations with a readable verdict are kept. One-CoT settings take the first such chain; multi-CoT settings
    /// take all, repeating the question once per chain. Self-evaluation sees the first chain (one-CoT) or all of them,
    /// right and wrong, since learning to spot a wrong answer needs wrong answers. With <paramref name="cots"/> &gt; 0 only
    /// the first that many chains of each question (in sample order) are read at all.
    /// In the <paramref name="selfEvaluationForm"/> <see cref="StudentSelfEvaluationForms.LabelRationale"/> (the paper's)
    /// an evaluation is a label row <c>predict: Q\nanswer: CoT</c> → verdict and a rationale row <c>explain: Q\nanswer: CoT</c>
    /// → analysis (none when the analysis is empty), and one without a readable verdict is left out; in
    /// <see cref="StudentSelfEvaluationForms.Whole"/> it is one row <c>evaluate: Q\nanswer: CoT</c> → the whole evaluation.
    /// </summary>
    public static StudentExamples Build(IReadOnlyList<DistilledQuestion> questions, string setting, string labels, string rationales = StudentRationales.All,
        string selfEvaluationForm = StudentSelfEvaluationForms.LabelRationale, int cots = 0)
    {
        var gold = labels == StudentLabels.Gold;
        var consistent = rationales == StudentRationales.Consistent;
        var whole = selfEvaluationForm == StudentSelfEvaluationForms.Whole;
        // Any text will do only for a whole evaluation kept unfiltered; every other form reads the verdict.
        var anyText = gold && !consistent && whole;
        var distillation = new List<DistillationExample>();
        var selfEvaluation = new List<SelfEvaluationExample>();
        int withoutLabel = 0, withoutRationale = 0, evaluationsSeen = 0;
        foreach (var (question, written) in questions)
        {
            var read = cots > 0 ? written.Take(cots).ToList() : written;
            var usable = read.Where(c => gold ? c.Correct || !consistent : c.Answer is not null).ToList();
            if (!StudentSettings.UsesRationales(setting))
            {
                var label = gold ? question.Gold : usable.FirstOrDefault()?.Answer;
                if (label is null) withoutLabel++;
                else distillation.Add(new DistillationExample(question.Id, question.Question, label, null));
            }
            else
            {
                var chosen = StudentSettings.UsesAllCots(setting) ? usable : usable.Take(1).ToList();
                if (chosen.Count == 0)
                {
                    withoutRationale++;
                    if (gold) distillation.Add(new DistillationExample(question.Id, question.Question, question.Gold, null));
                    else withoutLabel++;
                }
                foreach (var cot in chosen)
                {
                    distillation.Add(new DistillationExample(question.Id, question.Question, gold ? question.Gold : cot.Answer!, cot.Cot));
                }
            }
            if (StudentSettings.UsesSelfEvaluation(setting))
            {
                foreach (var cot in StudentSettings.UsesAllCots(setting) ? read : read.Take(1))
                {
                    foreach (var evaluation in cot.Evaluations)
                    {
                        evaluationsSeen++;
                        if (anyText)
                        {
                            if (string.IsNullOrWhiteSpace(evaluation.Evaluation)) continue;
                        }
                        else if (evaluation.Label is null || (gold && consistent && evaluation.Label != (cot.Correct ? "correct" : "wrong"))) continue;
                        selfEvaluation.Add(SelfEvaluationRows(question, cot, evaluation, whole));
                    }
                }
            }
        }
        if (distillation.Count == 0)
        {
            throw new UserInputException($"No question has a {(gold ? "gold" : "teacher")} label; {(gold ? "check the dataset's answers" : "the teacher's answers could not be read, so train with --labels gt")}.");
        }
        if (StudentSettings.UsesSelfEvaluation(setting) && selfEvaluation.Count == 0)
        {
            throw new UserInputException(evaluationsSeen == 0
                ? $"The data holds no self-evaluation for setting {setting}; generate them with 'babel distill generate --evals 1' or more, or choose a setting without -se."
                : $"None of the {evaluationsSeen} self-evaluations of setting {setting} has {(anyText ? "any text" : "a readable verdict")}{(gold && consistent ? " that agrees with the gold answer" : "")}; use a stronger teacher, or a setting without -se.");
        }
        return new StudentExamples(distillation, selfEvaluation, withoutLabel, withoutRationale);
    }

    private static SelfEvaluationExample SelfEvaluationRows(StudentQuestion question, TeacherCot cot, TeacherEvaluation evaluation, bool whole)
    {
        if (whole) return new SelfEvaluationExample(question.Id, new InstructionExample(StudentPrompts.Evaluate(question.Question, cot.Cot), evaluation.Evaluation), null);
        var evaluated = StudentPrompts.Evaluated(question.Question, cot.Cot);
        var analysis = Babel.Modeling.Distillation.SelfEvaluation.Analysis(evaluation.Evaluation);
        return new SelfEvaluationExample(question.Id, new InstructionExample(StudentPrompts.Predict(evaluated), evaluation.Label!),
            analysis.Length == 0 ? null : new InstructionExample(StudentPrompts.Explain(evaluated), analysis));
    }
}

/// <summary>The task prefixes of the student (the text before the question says which output is asked for).</summary>
public static class StudentPrompts
{
    public static string Predict(string question) => "predict: " + question;

    public static string Explain(string question) => "explain: " + question;

    /// <summary>The input of a self-evaluation: the question and the chain of thought to judge.</summary>
    public static string Evaluated(string question, string cot) => question + "\nanswer: " + cot;

    /// <summary>The prompt of a whole self-evaluation (<see cref="StudentSelfEvaluationForms.Whole"/>).</summary>
    public static string Evaluate(string question, string cot) => "evaluate: " + Evaluated(question, cot);

    /// <summary>[BOS] prompt newline: what the student continues at test time.</summary>
    public static int[] PromptIds(ITokenizer tokenizer, string prompt) => [tokenizer.BosId, .. tokenizer.Encode(InstructionTuning.Prompt(prompt))];
}
