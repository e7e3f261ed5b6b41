using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Modeling.Generation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Serving;

/// <summary>
/// <c>babel serve</c> with a chat template in the model folder: <c>/v1/chat/completions</c> prompts the model with the
/// template's rendering (with <c>add_generation_prompt</c>; the template's own BOS, none added), rows stop at every EOS id
/// of <c>generation_config.json</c>, and what the template refuses is a 400 in the template's words.
/// </summary>
public class ServeChatTemplateTests
{
    private const string Template =
        "{{ bos_token }}{% for m in messages %}"
        + "{% if m.role == 'tool' %}{{ raise_exception('Tool messages are not supported by this template.') }}{% endif %}"
        + "<{{ m.role }}>{{ m.content | trim }}{{ eos_token }}{% endfor %}"
        + "{% if tools %}[tools: {{ tools | map(attribute='function.name') | join(', ') }}]{% endif %}"
        + "{% if add_generation_prompt %}<assistant>{% endif %}";

    private const int MaxTokens = 8;

    private static void AddTemplate(string folder)
    {
        var path = Path.Combine(folder, TokenizerConfig.FileName);
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["chat_template"] = Template;
        File.WriteAllText(path, config.ToJsonString());
    }

    private static Task<ServedApi> StartAsync(ScratchFolder scratch, Action<string>? prepare = null) =>
        ServedApi.StartAsync(scratch, contextLength: 512, prepareModel: folder =>
        {
            AddTemplate(folder);
            prepare?.Invoke(folder);
        });

    private static JsonArray Conversation() => new(
        new JsonObject { ["role"] = "system", ["content"] = "Answer briefly." },
        new JsonObject { ["role"] = "user", ["content"] = "  the cat sat on the mat  " });

    private static JsonObject Request(JsonArray messages, bool stream = false) => new()
    {
        ["messages"] = messages, ["max_tokens"] = MaxTokens, ["temperature"] = 0, ["stream"] = stream,
    };

    /// <summary>The greedy continuation of <paramref name="prompt"/> by the served model's weights, computed here.</summary>
    private static int[] Greedy(string folder, int[] prompt)
    {
        using var model = CausalLanguageModel.Load(folder);
        return TextGenerator.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = MaxTokens, StopAtEos = false }, padId: 2)[0];
    }

    [Fact]
    public async Task Chat_completions_prompt_the_model_with_the_rendered_template()
    {
        using var scratch = new ScratchFolder();
        await using var api = await StartAsync(scratch);
        var (status, body) = await api.PostAsync("/v1/chat/completions", Request(Conversation()));
        Assert.True(status == 200, body.ToJsonString());

        var rendered = ChatTemplate.Load(api.ModelFolder)!.Render(Conversation(), addGenerationPrompt: true);
        Assert.Equal("<s><system>Answer briefly.</s><user>the cat sat on the mat</s><assistant>", rendered);
        using var tokenizer = HuggingFaceTokenizer.Load(api.ModelFolder);
        var ids = tokenizer.Encode(rendered);
        // One BOS, the template's: the server adds none of its own.
        Assert.Equal(tokenizer.BosId, ids[0]);
        Assert.NotEqual(tokenizer.BosId, ids[1]);
        Assert.Equal(ids.Length, (int)body["usage"]!["prompt_tokens"]!);

        // The model saw exactly these ids: the served completion is their greedy continuation.
        var continuation = Greedy(api.ModelFolder, ids);
        var eos = Array.IndexOf(continuation, tokenizer.EosId);
        var generated = eos >= 0 ? continuation[..(eos + 1)] : continuation;
        Assert.Equal(tokenizer.Decode(eos >= 0 ? continuation[..eos] : continuation), ServedApi.Texts(body)[0]);
        Assert.Equal(generated.Length, (int)body["usage"]!["completion_tokens"]!);

        // Tools reach the template; OpenAI's text content parts arrive as one string.
        var tools = new JsonArray(new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["parameters"] = new JsonObject() } });
        var withTools = Request(Conversation());
        withTools["tools"] = tools.DeepClone();
        var parts = Conversation();
        parts[1]!["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "the cat" }, new JsonObject { ["type"] = "text", ["text"] = "sat" });
        withTools["messages"] = parts;
        (status, body) = await api.PostAsync("/v1/chat/completions", withTools);
        Assert.True(status == 200, body.ToJsonString());
        var flattened = Conversation();
        flattened[1]!["content"] = "the cat\nsat";
        var renderedWithTools = ChatTemplate.Load(api.ModelFolder)!.Render(flattened, addGenerationPrompt: true, (JsonArray)tools.DeepClone());
        Assert.EndsWith("[tools: get_weather]<assistant>", renderedWithTools, StringComparison.Ordinal);
        Assert.Equal(tokenizer.Encode(renderedWithTools).Length, (int)body["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task Generation_stops_at_every_eos_id_of_generation_config()
    {
        using var scratch = new ScratchFolder();
        int[] continuation = [];
        var stopAt = -1;
        await using var api = await StartAsync(scratch, folder =>
        {
            using var tokenizer = HuggingFaceTokenizer.Load(folder);
            var rendered = ChatTemplate.Load(folder)!.Render(Conversation(), addGenerationPrompt: true);
            continuation = Greedy(folder, tokenizer.Encode(rendered));
            // A token the greedy continuation reaches after the first step, and not before: made an EOS id, it ends the row there.
            stopAt = Enumerable.Range(1, continuation.Length - 1).First(k => !continuation[..k].Contains(continuation[k]) && continuation[k] != tokenizer.EosId);
            File.WriteAllText(Path.Combine(folder, GenerationConfig.FileName),
                new JsonObject { ["eos_token_id"] = new JsonArray(tokenizer.EosId, continuation[stopAt]) }.ToJsonString());
        });
        Assert.Contains(continuation[stopAt], api.Model.StopIds);
        using var tokenizer = HuggingFaceTokenizer.Load(api.ModelFolder);
        var expected = tokenizer.Decode(continuation[..stopAt]);

        var (status, body) = await api.PostAsync("/v1/chat/completions", Request(Conversation()));
        Assert.True(status == 200, body.ToJsonString());
        Assert.Equal("stop", (string)body["choices"]![0]!["finish_reason"]!);
        Assert.Equal(stopAt + 1, (int)body["usage"]!["completion_tokens"]!);
        // The stop token itself is not part of the text.
        Assert.Equal(expected, ServedApi.Texts(body)[0]);

        using var response = await api.Http.PostAsync("/v1/chat/completions", ServedApi.Json(Request(Conversation(), stream: true)));
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e["data: ".Length..]).Where(e => e != "[DONE]").Select(e => JsonNode.Parse(e)!["choices"]![0]!).ToList();
        Assert.Equal(expected, string.Concat(events.Select(c => (string?)c["delta"]!["content"] ?? "")));
        Assert.Equal("stop", (string)events[^1]["finish_reason"]!);
    }

    [Fact]
    public async Task What_the_template_refuses_is_a_400_in_its_own_words()
    {
        using var scratch = new ScratchFolder();
        await using var api = await StartAsync(scratch);

        var withTool = Conversation();
        withTool.Add(new JsonObject { ["role"] = "tool", ["content"] = "42" });
        var (status, body) = await api.PostAsync("/v1/chat/completions", Request(withTool));
        Assert.Equal(400, status);
        Assert.Equal("The model's chat template refused these messages: Tool messages are not supported by this template.", (string)body["error"]!["message"]!);
        Assert.Equal("messages", (string)body["error"]!["param"]!);

        // A tool that is not a function definition breaks the template's map(attribute='function.name').
        var badTools = Request(Conversation());
        badTools["tools"] = new JsonArray("get_weather");
        (status, body) = await api.PostAsync("/v1/chat/completions", badTools);
        Assert.Equal(400, status);
        var message = (string)body["error"]!["message"]!;
        Assert.StartsWith("The model's chat template could not render these messages (", message, StringComparison.Ordinal);
        Assert.Contains("of the template", message, StringComparison.Ordinal);
        Assert.DoesNotContain(api.ModelFolder, message, StringComparison.Ordinal);

        foreach (var (bad, expected) in new (JsonNode Messages, string Error)[]
        {
            (new JsonArray(new JsonObject { ["content"] = "no role" }), "Every message must be an object with a string 'role'."),
            (new JsonArray(new JsonObject { ["role"] = "user", ["content"] = 5 }), "A message's 'content' must be a string, an array of text parts or null (got a number)."),
            (new JsonArray(new JsonObject { ["role"] = "user", ["content"] = new JsonArray(new JsonObject { ["type"] = "image_url" }) }),
                "A message's content parts must be text parts ({\"type\": \"text\", \"text\": ...}); other kinds are not supported."),
        })
        {
            var request = Request(new JsonArray());
            request["messages"] = bad;
            (status, body) = await api.PostAsync("/v1/chat/completions", request);
            Assert.Equal(400, status);
            Assert.Equal(expected, (string)body["error"]!["message"]!);
        }
        var wrongTools = Request(Conversation());
        wrongTools["tools"] = "get_weather";
        (status, body) = await api.PostAsync("/v1/chat/completions", wrongTools);
        Assert.Equal(400, status);
        Assert.Equal("tools", (string)body["error"]!["param"]!);
    }

    [Fact]
    public async Task Without_a_template_messages_are_joined_as_before()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch, contextLength: 512);
        Assert.Null(api.Model.ChatTemplate);
        var (status, body) = await api.PostAsync("/v1/chat/completions", Request(Conversation()));
        Assert.True(status == 200, body.ToJsonString());
        using var tokenizer = HuggingFaceTokenizer.Load(api.ModelFolder);
        Assert.Equal(1 + tokenizer.Encode("Answer briefly.\n\n  the cat sat on the mat  ").Length, (int)body["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task A_broken_template_stops_the_server_from_starting_with_one_sentence()
    {
        using var scratch = new ScratchFolder();
        var error = await Assert.ThrowsAsync<UserInputException>(() => ServedApi.StartAsync(scratch, prepareModel: folder =>
        {
            var path = Path.Combine(folder, TokenizerConfig.FileName);
            var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            config["chat_template"] = "{% for m in messages %}\n{{ m.content | shout }}{% endfor %}";
            File.WriteAllText(path, config.ToJsonString());
        }));
        Assert.Equal(
            $"The chat template in tokenizer_config.json in '{scratch.Combine("model")}' cannot be used: No filter named 'shout' (it is not among the filters chat templates are given) (line 2, column 16); fix the template.",
            error.Message);
    }
}
