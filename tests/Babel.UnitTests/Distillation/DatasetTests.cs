using Babel.Modeling.Distillation;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary>The GSM8K and generic JSONL adapters on real and broken files.</summary>
public class DatasetTests
{
    public static readonly string Gsm8k = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Checkpoints.CheckpointTestFiles.Stories260K)!, "..", "..", "data", "gsm8k"));

    [Fact]
    public void The_real_gsm8k_test_split_reads_with_every_gold_answer_numeric()
    {
        var file = DistillationDataset.ResolveFile(Gsm8k, "test");
        var questions = DistillationDataset.Read("gsm8k", file, "test");
        Assert.Equal(1319, questions.Count);
        Assert.Equal("test-00001", questions[0].Id);
        Assert.All(questions, q => Assert.NotNull(AnswerParser.ParseGold(DistillationTask.Math, q.Gold)));
        Assert.Equal("18", AnswerParser.ParseGold(DistillationTask.Math, questions[0].Gold));
    }

    [Fact]
    public void Generic_jsonl_reads_ids_numbers_choices_and_nli_pairs()
    {
        using var scratch = new ScratchFolder();
        var file = scratch.Combine("data.jsonl");
        File.WriteAllLines(file,
        [
            """{"id": "a", "question": "Where?", "answer": "b", "choices": ["x", "y"]}""",
            "",
            """{"id": 7, "question": "How many?", "answer": 3.5}""",
            """{"premise": "A man plays.", "hypothesis": "A man sleeps.", "answer": "contradiction"}""",
        ]);
        var questions = DistillationDataset.Read("jsonl", file, "train");
        Assert.Equal(["a", "7", "00004"], questions.Select(q => q.Id));
        Assert.Equal(["x", "y"], questions[0].Choices!);
        Assert.Equal("3.5", questions[1].Gold);
        Assert.Equal("Premise: A man plays. Hypothesis: A man sleeps.", questions[2].Question);
    }

    [Theory]
    [InlineData("{\"id\": \"a\", \"question\": \"Q\", \"answer\": \"1\"}\n{not json", "line 2 is not valid JSON")]
    [InlineData("{\"id\": \"a\", \"answer\": \"1\"}", "line 1 has no \"question\" string")]
    [InlineData("{\"id\": \"a\", \"question\": \"Q\"}", "line 1 has no \"answer\"")]
    [InlineData("{\"id\": \"a\", \"question\": \"Q\", \"answer\": 1}\n{\"id\": \"a\", \"question\": \"Q\", \"answer\": 2}", "line 2 repeats the id 'a'")]
    [InlineData("{\"id\": \"a\", \"question\": \"Q\", \"answer\": 1, \"choices\": [1, 2]}", "line 1 has \"choices\" that is not an array of strings")]
    [InlineData("\n\n", "holds no records")]
    public void Broken_jsonl_is_one_sentence_with_the_line_number(string content, string expected)
    {
        using var scratch = new ScratchFolder();
        var file = scratch.Combine("data.jsonl");
        File.WriteAllText(file, content);
        var error = Assert.Throws<UserInputException>(() => DistillationDataset.Read("jsonl", file, "train"));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gsm8k_line_without_its_final_answer_is_reported()
    {
        using var scratch = new ScratchFolder();
        var file = scratch.Combine("train.jsonl");
        File.WriteAllText(file, "{\"question\": \"Q\", \"answer\": \"no mark\"}\n");
        Assert.Contains("line 1 has an answer without the final '#### N'", Assert.Throws<UserInputException>(() => DistillationDataset.Read("gsm8k", file, "train")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gsm8k", "--dataset 'gsm8k' is not understood")]
    [InlineData("csv:x.csv", "--dataset 'csv:x.csv' is not understood")]
    public void Bad_dataset_specs_are_one_sentence(string spec, string expected) =>
        Assert.Contains(expected, Assert.Throws<UserInputException>(() => DistillationDataset.ParseSpec(spec)).Message, StringComparison.Ordinal);

    [Fact]
    public void Missing_files_and_splits_are_one_sentence()
    {
        using var scratch = new ScratchFolder();
        Assert.Contains("does not exist", Assert.Throws<UserInputException>(() => DistillationDataset.ResolveFile(scratch.Combine("nope.jsonl"), "train")).Message, StringComparison.Ordinal);
        Assert.Contains("has no dev.jsonl", Assert.Throws<UserInputException>(() => DistillationDataset.ResolveFile(scratch.Path, "dev")).Message, StringComparison.Ordinal);
    }
}
