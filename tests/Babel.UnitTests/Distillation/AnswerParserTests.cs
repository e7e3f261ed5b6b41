using Babel.Modeling.Distillation;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary>The answer, gold and evaluation parsers on the shapes teachers and datasets really produce.</summary>
public class AnswerParserTests
{
    [Theory]
    [InlineData("She has 3 + 4 = 7 apples. The answer is 7.", "7")]
    [InlineData("The total is 1234.50 dollars. The answer is $1,234.50.", "1234.5")]
    [InlineData("The answer is 1,234", "1234")]
    [InlineData("The answer is -3.", "-3")]
    [InlineData("The answer is −12 degrees.", "-12")]
    [InlineData("the answer is 3/4 of a cake", "0.75")]
    [InlineData("The answer is 1/3.", "0.333333")]
    [InlineData("The answer is .5", "0.5")]
    [InlineData("The answer is 18 dollars. Q: Next question with 99 apples", "18")]
    [InlineData("First the answer is 5, but wait: 5 + 2 = 7. So the answer is 7.", "7")]
    [InlineData("Answer: 42", "42")]
    [InlineData("The answer is: 10.00", "10")]
    [InlineData("The answer is 0.", "0")]
    [InlineData("The answer is 1,000,000 people.", "1000000")]
    public void Math_answers_are_read_and_normalised(string text, string expected) =>
        Assert.Equal(expected, AnswerParser.ParsePrediction(DistillationTask.Math, text));

    [Theory]
    [InlineData("She has 3 + 4 = 7 apples.")]
    [InlineData("")]
    [InlineData("The answer is unknown.")]
    [InlineData("Once upon a time there was a little girl named Lily. She liked to play.")]
    [InlineData("The answer is x/0")]
    public void Math_text_without_a_stated_number_is_unparseable(string text) =>
        Assert.Null(AnswerParser.ParsePrediction(DistillationTask.Math, text));

    [Theory]
    [InlineData("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72", "72")]
    [InlineData("He pays 2 x 1,000 = <<2*1000=2000>>2,000.\n#### 2,000", "2000")]
    [InlineData("It drops to <<5-8=-3>>-3.\n#### -3", "-3")]
    [InlineData("#### 0.5", "0.5")]
    [InlineData("( 8.0 - 5.0 )", "3")]
    [InlineData("( ( 8.0 - 5.0 ) * 2.0 ) / 4", "1.5")]
    [InlineData("-( 2 + 3 )", "-5")]
    [InlineData("17", "17")]
    [InlineData("17.0", "17")]
    [InlineData("1,234", "1234")]
    public void Math_gold_answers_come_from_gsm8k_marks_numbers_and_svamp_equations(string gold, string expected) =>
        Assert.Equal(expected, AnswerParser.ParseGold(DistillationTask.Math, gold));

    [Fact]
    public void Svamp_equations_evaluate_as_a_naive_left_to_right_computation_would()
    {
        Assert.True(Arithmetic.TryEvaluate("2 + 3 * 4", out var value));
        Assert.Equal(14m, value);
        Assert.True(Arithmetic.TryEvaluate("( 10.0 / 4.0 ) - 1", out value));
        Assert.Equal(1.5m, value);
        Assert.False(Arithmetic.TryEvaluate("( 1 + 2", out _));
        Assert.False(Arithmetic.TryEvaluate("1 / 0", out _));
        Assert.False(Arithmetic.TryEvaluate("two", out _));
    }

    private static readonly string[] Choices = ["table", "cupboard", "oven", "floor", "sink"];

    [Theory]
    [InlineData("Plates go in a cupboard. The answer is (b).", "b")]
    [InlineData("the answer is (B) cupboard", "b")]
    [InlineData("The answer is b) cupboard.", "b")]
    [InlineData("The answer is B", "b")]
    [InlineData("The answer is e.", "e")]
    [InlineData("The answer is cupboard.", "b")]
    [InlineData("The answer is: (d)", "d")]
    public void Choices_are_read_as_letters(string text, string expected) =>
        Assert.Equal(expected, AnswerParser.ParsePrediction(DistillationTask.Choice, text, Choices));

    [Theory]
    [InlineData("The answer is a hat.")]
    [InlineData("The answer is (z).")]
    [InlineData("I do not know which.")]
    [InlineData("The answer is somewhere in the kitchen.")]
    public void Choices_that_are_not_a_listed_letter_are_unparseable(string text) =>
        Assert.Null(AnswerParser.ParsePrediction(DistillationTask.Choice, text, Choices));

    [Theory]
    [InlineData("So the premise supports it. The answer is entailment.", "entailment")]
    [InlineData("The answer is Contradiction", "contradiction")]
    [InlineData("The answer is neutral, since nothing is said.", "neutral")]
    [InlineData("The answer is: the premise entails the hypothesis.", "entailment")]
    [InlineData("The answer is that they contradict each other.", "contradiction")]
    public void Nli_labels_are_read(string text, string expected) =>
        Assert.Equal(expected, AnswerParser.ParsePrediction(DistillationTask.Nli, text));

    [Fact]
    public void Nli_without_a_label_is_unparseable() =>
        Assert.Null(AnswerParser.ParsePrediction(DistillationTask.Nli, "The answer is maybe."));

    [Theory]
    [InlineData("24 + 18 = 42 is right. Evaluation result: the given answer is correct.", EvaluationLabel.Correct)]
    [InlineData("3 + 2.50 is not 3 x 2.50. Evaluation result: the given answer is wrong.", EvaluationLabel.Wrong)]
    [InlineData("evaluation result: The given answer is INCORRECT", EvaluationLabel.Wrong)]
    [InlineData("Hard to say. Evaluation result: the given answer is uncertain. Q: next", EvaluationLabel.Uncertain)]
    [InlineData("Evaluation result: correct", EvaluationLabel.Correct)]
    public void Evaluation_results_are_read(string text, EvaluationLabel expected) =>
        Assert.Equal(expected, SelfEvaluation.Parse(text));

    [Theory]
    [InlineData("The given answer is correct.")]
    [InlineData("Evaluation result: the given answer is probably fine.")]
    [InlineData("")]
    public void Evaluations_without_a_result_are_unparseable(string text) => Assert.Null(SelfEvaluation.Parse(text));

    [Fact]
    public void Templates_are_embedded_filled_and_hashed()
    {
        foreach (var task in Enum.GetValues<DistillationTask>())
        {
            var templates = PromptTemplates.For(task);
            Assert.Contains("{question}", templates.ChainOfThought.Text, StringComparison.Ordinal);
            Assert.Contains("{cot}", templates.Evaluation.Text, StringComparison.Ordinal);
            Assert.Matches("^[0-9a-f]{64}$", templates.ChainOfThought.Sha256);
            Assert.NotEqual(templates.ChainOfThought.Sha256, templates.Evaluation.Sha256);
        }
        var choice = PromptTemplates.For(DistillationTask.Choice);
        var filled = choice.Evaluation.Fill(new DistillationQuestion("q1", "Where do {plates} go?", "b", Choices), "They go in (b).");
        Assert.Contains("Q: Where do {plates} go?\nAnswer choices: (a) table (b) cupboard (c) oven (d) floor (e) sink\nGiven answer: They go in (b).\nEvaluation:", filled, StringComparison.Ordinal);
        Assert.EndsWith("Evaluation:", filled, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("math", DistillationTask.Math)]
    [InlineData("Choice", DistillationTask.Choice)]
    [InlineData("nli", DistillationTask.Nli)]
    public void Task_names_parse(string name, DistillationTask expected) => Assert.Equal(expected, DistillationTasks.Parse(name));

    [Fact]
    public void An_unknown_task_is_one_sentence() =>
        Assert.Equal("Unknown task 'poetry'; use --task math, choice or nli.", Assert.Throws<UserInputException>(() => DistillationTasks.Parse("poetry")).Message);
}
