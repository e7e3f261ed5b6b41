using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Storage;

namespace Babel.Modeling.Chat;

/// <summary>
/// How a model folder is prompted and where its generations end, the one place <c>babel serve</c> and the <c>local:</c>
/// teacher take it from: a conversation becomes the ids of its chat template's rendering with
/// <c>add_generation_prompt</c> (the template writes its own special tokens, BOS included), or, for a folder without a
/// chat template, BOS and the messages' contents joined by a blank line; a plain completion prompt is BOS and its text.
/// A generation ends at every EOS id of <c>config.json</c>, <c>generation_config.json</c> and the tokenizer.
/// </summary>
public sealed class PromptFormat
{
    /// <summary>What separates the messages of a conversation joined without a chat template.</summary>
    public const string JoinedMessageSeparator = "\n\n";

    private readonly ITokenizer _tokenizer;
    private readonly int _bosTokenId;

    private PromptFormat(ChatTemplate? template, ITokenizer tokenizer, int bosTokenId, IReadOnlySet<int> stopTokenIds)
    {
        ChatTemplate = template;
        _tokenizer = tokenizer;
        _bosTokenId = bosTokenId;
        StopTokenIds = stopTokenIds;
    }

    /// <summary>The model folder's chat template; null when it has none (messages are then joined).</summary>
    public ChatTemplate? ChatTemplate { get; }

    /// <summary>Every id that ends a generation: <c>config.json</c>'s and <c>generation_config.json</c>'s <c>eos_token_id</c> (each id of a list) and the tokenizer's EOS.</summary>
    public IReadOnlySet<int> StopTokenIds { get; }

    /// <summary>
    /// The prompt format of <paramref name="modelFolder"/>, whose <paramref name="config"/> and <paramref name="tokenizer"/>
    /// the caller loaded (and keeps owning). Reads no weights, so a broken template is refused before they load.
    /// </summary>
    /// <exception cref="UserInputException">The chat template, <c>tokenizer_config.json</c> or <c>generation_config.json</c> is malformed (one sentence naming the file).</exception>
    public static PromptFormat Load(string modelFolder, ModelConfig config, ITokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var template = ChatTemplate.Load(modelFolder);
        var generation = GenerationConfig.Load(modelFolder);
        HashSet<int> stops = [config.EosTokenId, tokenizer.EosId, .. ConfigEosTokenIds(modelFolder), .. generation?.EosTokenIds ?? []];
        return new PromptFormat(template, tokenizer, config.BosTokenId, stops);
    }

    /// <summary>The ids of a completion prompt: BOS, then the text's tokens.</summary>
    /// <exception cref="ArgumentException">The text cannot be tokenized (e.g. it holds a lone surrogate).</exception>
    public int[] Completion(string text) => [_bosTokenId, .. _tokenizer.Encode(text)];

    /// <summary>
    /// The ids of <paramref name="messages"/> (objects with <c>role</c> and <c>content</c>, as in OpenAI's chat format) ready
    /// for the assistant's reply: the chat template's rendering with <c>add_generation_prompt</c> and
    /// <paramref name="tools"/>, tokenized with nothing added; without a template, the <see cref="Completion"/> of the
    /// contents joined by <see cref="JoinedMessageSeparator"/> (a null content counts as empty).
    /// </summary>
    /// <exception cref="UserInputException">The template refused the conversation or failed (inner <see cref="ChatTemplateException"/>).</exception>
    /// <exception cref="ArgumentException">The text cannot be tokenized (e.g. it holds a lone surrogate).</exception>
    public int[] Chat(JsonArray messages, JsonArray? tools = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (ChatTemplate is { } template) return _tokenizer.Encode(template.Render(messages, addGenerationPrompt: true, tools));
        return Completion(string.Join(JoinedMessageSeparator, messages.Select(m => m?["content"] is JsonValue content && content.TryGetValue<string>(out var text) ? text : "")));
    }

    /// <summary>The ids of one user message ready for the assistant's reply (see <see cref="Chat(JsonArray, JsonArray?)"/>).</summary>
    public int[] UserMessage(string content) => Chat(new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }));

    // config.json may list several EOS ids (Llama 3.1 instruct: <|end_of_text|>, <|eom_id|>, <|eot_id|>); ModelConfig keeps the first.
    private static IReadOnlyList<int> ConfigEosTokenIds(string modelFolder)
    {
        var path = Path.Combine(modelFolder, ModelConfig.ConfigFileName);
        return File.Exists(path) ? GenerationConfig.EosTokenIdsOf(ConfigFiles.ReadObject(path), path) : [];
    }
}
