using System.Text;
using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Modeling.Distillation;
using Babel.Modeling.Generation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Deploy;
using Babel.UnitTests.Jobs;
using Xunit;

namespace Babel.UnitTests.Distillation;

/// <summary>
/// The <c>local:</c> teacher prompts an instruction-tuned checkpoint as <c>babel serve</c> does: its question is one user
/// message rendered by the folder's chat template with the generation prompt (the render byte for byte as Python's
/// jinja2 wrote it into the chat fixtures, <c>tests/Babel.UnitTests/Chat/make_fixtures.py</c>), and a row ends at every
/// EOS id of <c>generation_config.json</c>.
/// </summary>
public class LocalTeacherChatTemplateTests
{
    private const int MaxTokens = 10;
    private static readonly string ChatFixtures = Path.Combine(ManifestTests.RepositoryRoot, "tests", "Babel.UnitTests", "Chat");

    /// <summary>The fixtures' one-message conversation: its user text, and what jinja2 rendered for <paramref name="template"/>.</summary>
    private static (string Question, string Rendered) UserOnly(string template)
    {
        var conversations = JsonNode.Parse(File.ReadAllText(Path.Combine(ChatFixtures, "conversations.json")))!["conversations"]!.AsArray();
        var messages = conversations.Single(c => (string)c!["name"]! == "user-only")!["messages"]!.AsArray();
        var question = (string)Assert.Single(messages)!["content"]!;
        return (question, File.ReadAllText(Path.Combine(ChatFixtures, "Expected", template, "user-only.prompt.txt"), Encoding.UTF8));
    }

    /// <summary>A tiny model folder (special tokens &lt;s&gt;, &lt;/s&gt;, &lt;pad&gt;) with <paramref name="template"/> as its chat template.</summary>
    private static string ModelWithTemplate(ScratchFolder scratch, string template, bool inTokenizerConfig)
    {
        var (folder, _) = JobTestInputs.Write(scratch, contextLength: 256);
        var text = File.ReadAllText(Path.Combine(ChatFixtures, "Templates", template + ".jinja"), Encoding.UTF8);
        if (inTokenizerConfig)
        {
            var path = Path.Combine(folder, TokenizerConfig.FileName);
            var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            config["chat_template"] = text;
            File.WriteAllText(path, config.ToJsonString());
        }
        else
        {
            File.WriteAllText(Path.Combine(folder, ChatTemplate.TemplateFileName), text);
        }
        return folder;
    }

    private static TeacherRequest Greedy(string prompt) => new(prompt, 0, 1.0, MaxTokens, 7, []);

    /// <summary>The model's greedy continuation of <paramref name="prompt"/>, every token (no EOS stop), computed here.</summary>
    private static int[] Continuation(string folder, int[] prompt)
    {
        using var model = CausalLanguageModel.Load(folder);
        return TextGenerator.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = MaxTokens, StopAtEos = false }, padId: 2)[0];
    }

    private static (CausalLanguageModel Model, HuggingFaceTokenizer Tokenizer, LocalTeacher Teacher) Teacher(string folder, int batchSize = 4)
    {
        var model = CausalLanguageModel.Load(folder);
        var tokenizer = HuggingFaceTokenizer.Load(folder);
        return (model, tokenizer, new LocalTeacher(model, tokenizer, PromptFormat.Load(folder, model.Config, tokenizer), "m", batchSize));
    }

    [Theory]
    // Qwen2.5's template as chat_template.jinja (no BOS of its own; a default system message), Mistral v0.3's in
    // tokenizer_config.json (it writes bos_token, <s> here as in Mistral's vocabulary).
    [InlineData("qwen2.5-instruct", false)]
    [InlineData("mistral-v0.3-instruct", true)]
    public async Task The_teacher_feeds_the_chat_template_rendering_of_its_prompt(string template, bool inTokenizerConfig)
    {
        using var scratch = new ScratchFolder();
        var folder = ModelWithTemplate(scratch, template, inTokenizerConfig);
        var (question, rendered) = UserOnly(template);
        var (model, tokenizer, teacher) = Teacher(folder);
        using (model)
        using (tokenizer)
        using (teacher)
        {
            var expected = tokenizer.Encode(rendered);
            Assert.Equal(expected, teacher.Prompt(Greedy(question)));
            // Exactly one BOS, the template's own (Mistral), or none (Qwen): the teacher adds nothing.
            Assert.Equal(template.StartsWith("mistral", StringComparison.Ordinal) ? 1 : 0, expected.Count(id => id == tokenizer.BosId));

            // The model saw exactly these ids: the completion is their greedy continuation up to EOS.
            var completion = (await teacher.CompleteAsync([Greedy(question)], CancellationToken.None))[0].Completion!;
            var continuation = Continuation(folder, expected);
            var eos = Array.IndexOf(continuation, tokenizer.EosId);
            Assert.Equal(expected.Length, completion.PromptTokens);
            Assert.Equal(tokenizer.Decode(eos >= 0 ? continuation[..eos] : continuation), completion.Text);
            Assert.Equal(eos >= 0 ? eos + 1 : MaxTokens, completion.CompletionTokens);
        }
    }

    [Fact]
    public async Task Generation_stops_at_a_second_eos_id_of_generation_config()
    {
        using var scratch = new ScratchFolder();
        var folder = ModelWithTemplate(scratch, "qwen2.5-instruct", inTokenizerConfig: false);
        var (question, rendered) = UserOnly("qwen2.5-instruct");
        int[] continuation;
        int eosId;
        using (var tokenizer = HuggingFaceTokenizer.Load(folder))
        {
            continuation = Continuation(folder, tokenizer.Encode(rendered));
            eosId = tokenizer.EosId;
        }
        // A token the greedy continuation reaches after its first step and not before: made an EOS id, it ends the row there.
        var stopAt = Enumerable.Range(1, continuation.Length - 1).First(k => !continuation[..k].Contains(continuation[k]) && !continuation[..(k + 1)].Contains(eosId));
        File.WriteAllText(Path.Combine(folder, GenerationConfig.FileName), new JsonObject { ["eos_token_id"] = new JsonArray(eosId, continuation[stopAt]) }.ToJsonString());

        var (model, loaded, teacher) = Teacher(folder);
        using (model)
        using (loaded)
        using (teacher)
        {
            var completion = (await teacher.CompleteAsync([Greedy(question)], CancellationToken.None))[0].Completion!;
            Assert.Equal("stop", completion.FinishReason);
            Assert.Equal(stopAt + 1, completion.CompletionTokens);
            // The stop token, an ordinary token of the vocabulary here, is not part of the text.
            Assert.Equal(loaded.Decode(continuation[..stopAt]), completion.Text);
            Assert.NotEqual(loaded.Decode(continuation[..(stopAt + 1)]), completion.Text);
        }
    }

    [Fact]
    public async Task Without_a_chat_template_the_prompt_is_bos_and_the_text()
    {
        using var scratch = new ScratchFolder();
        var (folder, _) = JobTestInputs.Write(scratch, contextLength: 256);
        var (model, tokenizer, teacher) = Teacher(folder);
        using (model)
        using (tokenizer)
        using (teacher)
        {
            const string Question = "the cat sat on the mat";
            int[] expected = [model.Config.BosTokenId, .. tokenizer.Encode(Question)];
            Assert.Equal(expected, teacher.Prompt(Greedy(Question)));
            var completion = (await teacher.CompleteAsync([Greedy(Question)], CancellationToken.None))[0].Completion!;
            Assert.Equal(expected.Length, completion.PromptTokens);
        }
    }
}
