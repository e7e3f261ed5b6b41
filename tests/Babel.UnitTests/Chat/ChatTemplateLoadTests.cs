using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Chat;

/// <summary>
/// <see cref="ChatTemplate.Load"/> finds the template where transformers does (<c>chat_template.jinja</c>, else
/// <c>tokenizer_config.json</c>'s string or its list's "default"), reads the special tokens and
/// <c>generation_config.json</c>'s EOS ids, and reports every problem as one sentence naming the file and, for a template
/// error, the line and column.
/// </summary>
public class ChatTemplateLoadTests
{
    private const string Template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

    private static string Folder(ScratchFolder scratch, JsonObject? tokenizerConfig = null, JsonObject? generationConfig = null, string? templateFile = null)
    {
        var folder = scratch.Combine("model");
        Directory.CreateDirectory(folder);
        if (tokenizerConfig is not null) File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), tokenizerConfig.ToJsonString());
        if (generationConfig is not null) File.WriteAllText(Path.Combine(folder, "generation_config.json"), generationConfig.ToJsonString());
        if (templateFile is not null) File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), templateFile);
        return folder;
    }

    private static readonly ChatMessage[] Conversation = [new("system", "Be brief."), new("user", "Hi")];

    [Fact]
    public void Reads_the_template_and_special_tokens_of_tokenizer_config()
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject
        {
            ["chat_template"] = Template,
            ["bos_token"] = "<s>",
            // Older configs spell special tokens as AddedToken objects.
            ["eos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = "</s>", ["lstrip"] = false },
            ["pad_token"] = null,
        });
        var template = ChatTemplate.Load(folder)!;
        Assert.Equal("<s>", template.BosToken);
        Assert.Equal("</s>", template.EosToken);
        Assert.Null(template.PadToken);
        Assert.Empty(template.EosTokenIds);
        Assert.Equal("<s><system>Be brief.</s><user>Hi</s><assistant>", template.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal("<s><system>Be brief.</s><user>Hi</s>", template.Render(Conversation, addGenerationPrompt: false));
    }

    [Fact]
    public void Takes_the_default_of_a_list_of_named_templates()
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject
        {
            ["chat_template"] = new JsonArray(
                new JsonObject { ["name"] = "tool_use", ["template"] = "tools" },
                new JsonObject { ["name"] = "default", ["template"] = "default:{{ messages|length }}" }),
        });
        Assert.Equal("default:2", ChatTemplate.Load(folder)!.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal(["tool_use", "default"], TokenizerConfig.Load(folder)!.NamedChatTemplates.Keys);
    }

    [Fact]
    public void A_list_without_a_default_is_refused_naming_the_templates()
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject
        {
            ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "tool_use", ["template"] = "tools" }),
        });
        var error = Assert.Throws<UserInputException>(() => ChatTemplate.Load(folder));
        Assert.Contains("tool_use", error.Message, StringComparison.Ordinal);
        Assert.Contains("'default'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_template_jinja_wins_over_tokenizer_config()
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject { ["chat_template"] = "from config", ["bos_token"] = "<s>" }, templateFile: "from file {{ bos_token }}\n");
        var template = ChatTemplate.Load(folder)!;
        // One trailing newline of the file is dropped, as jinja2 does by default.
        Assert.Equal("from file <s>", template.Render(Conversation, addGenerationPrompt: true));
        Assert.Contains("chat_template.jinja", template.Origin, StringComparison.Ordinal);
    }

    [Fact]
    public void A_folder_without_a_template_has_none()
    {
        using var scratch = new ScratchFolder();
        Assert.Null(ChatTemplate.Load(Folder(scratch)));
        Assert.Null(ChatTemplate.Load(Folder(scratch, new JsonObject { ["bos_token"] = "<s>" })));
    }

    [Theory]
    [InlineData("128009", new[] { 128009 })]
    [InlineData("[128001, 128008, 128009]", new[] { 128001, 128008, 128009 })]
    [InlineData("[2, 2, 7]", new[] { 2, 7 })]
    [InlineData("null", new int[0])]
    public void Reads_every_eos_id_of_generation_config(string eos, int[] expected)
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject { ["chat_template"] = Template },
            JsonNode.Parse($$"""{"bos_token_id": 128000, "eos_token_id": {{eos}}, "do_sample": true, "temperature": 0.6}""")!.AsObject());
        Assert.Equal(expected, ChatTemplate.Load(folder)!.EosTokenIds);
        var generation = GenerationConfig.Load(folder)!;
        Assert.Equal(expected, generation.EosTokenIds);
        Assert.Equal(128000, generation.BosTokenId);
        Assert.Null(generation.PadTokenId);
    }

    [Theory]
    [InlineData("generation_config.json", """{"eos_token_id": "</s>"}""", "eos_token_id")]
    [InlineData("generation_config.json", """{"eos_token_id": [1, -2]}""", "eos_token_id")]
    [InlineData("generation_config.json", "{not json", "not valid JSON")]
    [InlineData("tokenizer_config.json", """{"chat_template": 42}""", "chat_template")]
    [InlineData("tokenizer_config.json", """{"chat_template": [{"name": "default"}]}""", "chat_template")]
    [InlineData("tokenizer_config.json", """{"chat_template": "x", "eos_token": 5}""", "eos_token")]
    [InlineData("tokenizer_config.json", "[1, 2]", "not a JSON object")]
    public void A_malformed_file_is_one_sentence_naming_it(string file, string content, string mentioned)
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject { ["chat_template"] = Template });
        File.WriteAllText(Path.Combine(folder, file), content);
        var error = Assert.Throws<UserInputException>(() => ChatTemplate.Load(folder));
        Assert.Contains(file, error.Message, StringComparison.Ordinal);
        Assert.Contains(mentioned, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("line one\n{% if x %}\n  {{ x|nonsense }}\n{% endif %}", 3, 8, "No filter named 'nonsense'")]
    [InlineData("ok\r\n{{ 1 + }}", 2, 8, "Expected an expression")]
    [InlineData("{% for m in messages %}\n{{ m }}", 1, 1, "never closed")]
    [InlineData("{% include 'other.jinja' %}", 1, 1, "'include' is not supported")]
    public void A_syntax_error_names_the_template_line_and_column(string text, int line, int column, string detail)
    {
        using var scratch = new ScratchFolder();
        var folder = Folder(scratch, new JsonObject { ["chat_template"] = text });
        var error = Assert.Throws<UserInputException>(() => ChatTemplate.Load(folder));
        var details = Assert.IsType<ChatTemplateException>(error.InnerException);
        Assert.Equal(ChatTemplateFailure.Syntax, details.Failure);
        Assert.Equal((line, column), (details.Line, details.Column));
        Assert.Contains(detail, details.Detail, StringComparison.Ordinal);
        Assert.StartsWith($"The chat template in tokenizer_config.json in '{folder}' cannot be used: ", error.Message, StringComparison.Ordinal);
        Assert.Contains($"(line {line}, column {column})", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Raise_exception_and_render_errors_name_the_place_in_the_template()
    {
        var template = ChatTemplate.Parse(
            "{% for m in messages %}\n{% if m.role == 'system' %}\n  {{- raise_exception('System role not supported') }}\n{% endif %}\n{{ m.content + 1 }}{% endfor %}",
            "'test.jinja'");
        var refused = Assert.Throws<UserInputException>(() => template.Render(Conversation, addGenerationPrompt: false));
        Assert.Equal("The chat template in 'test.jinja' refused the conversation at line 3, column 7: System role not supported", refused.Message);
        Assert.Equal(ChatTemplateFailure.Refused, Assert.IsType<ChatTemplateException>(refused.InnerException).Failure);

        var failed = Assert.Throws<UserInputException>(() => template.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: false));
        Assert.Equal("The chat template in 'test.jinja' failed at line 5, column 14: can only concatenate str (not \"int\") to str.", failed.Message);
        Assert.Equal(ChatTemplateFailure.Render, Assert.IsType<ChatTemplateException>(failed.InnerException).Failure);
    }

    [Fact]
    public void Tools_and_extra_variables_reach_the_template()
    {
        var template = ChatTemplate.Parse(
            "{{ tools is none }}|{% for t in tools or [] %}{{ t.function.name }}{% endfor %}|{{ documents is none }}|{{ date_string | default('none') }}",
            "'test.jinja'");
        var messages = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "x" });
        Assert.Equal("True||True|none", template.Render(messages, addGenerationPrompt: true));
        var tools = new JsonArray(new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "lookup" } });
        Assert.Equal("False|lookup|True|1 Jan 2025", template.Render(messages, true, tools, new Dictionary<string, JsonNode?> { ["date_string"] = "1 Jan 2025" }));
    }

    [Fact]
    public void Numbers_keep_their_json_type()
    {
        var template = ChatTemplate.Parse("{{ messages[0].n }} {{ messages[0].f }} {{ messages[0].e }} {{ messages[0].n is integer }}", "'test.jinja'");
        var messages = JsonNode.Parse("""[{"n": 3, "f": 3.0, "e": 1e2}]""")!.AsArray();
        Assert.Equal("3 3.0 100.0 True", template.Render(messages, addGenerationPrompt: false));
        var built = new JsonArray(new JsonObject { ["n"] = 3, ["f"] = 3.0, ["e"] = 100.0 });
        Assert.Equal("3 3.0 100.0 True", template.Render(built, addGenerationPrompt: false));
    }
}
