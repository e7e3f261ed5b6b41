using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Chat.Jinja;
using Babel.Storage;

namespace Babel.Modeling.Chat;

/// <summary>One message of a conversation, for callers that have only roles and text (no tool calls).</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>What kind of failure a <see cref="ChatTemplateException"/> is.</summary>
public enum ChatTemplateFailure
{
    /// <summary>The template text is malformed, or uses a filter, test or tag Babel does not support.</summary>
    Syntax,
    /// <summary>Rendering failed (e.g. a value of the wrong type for an operation, or a missing variable used).</summary>
    Render,
    /// <summary>The template called <c>raise_exception</c>: it refuses the conversation (e.g. roles that do not alternate).</summary>
    Refused,
}

/// <summary>
/// The details of a chat template failure, carried as the inner exception of the <see cref="UserInputException"/> that
/// <see cref="ChatTemplate"/> throws: what went wrong and where in the template, without the template's location on disk
/// (so a server can tell a client).
/// </summary>
public sealed class ChatTemplateException(ChatTemplateFailure failure, string detail, int line, int column)
    : Exception($"{detail} (line {line}, column {column})")
{
    public ChatTemplateFailure Failure { get; } = failure;
    /// <summary>The error itself, e.g. "No filter named 'foo'" or the message the template raised.</summary>
    public string Detail { get; } = detail;
    /// <summary>1-based line in the template.</summary>
    public int Line { get; } = line;
    /// <summary>1-based column in the template.</summary>
    public int Column { get; } = column;
}

/// <summary>
/// A model's chat template: the Jinja2 program in its <c>tokenizer_config.json</c> (or <c>chat_template.jinja</c>) that
/// turns a conversation into the exact prompt text the model was trained on. It renders as Hugging Face transformers'
/// <c>apply_chat_template</c> does: Jinja2 with <c>trim_blocks</c> and <c>lstrip_blocks</c>, the <c>raise_exception</c> and
/// <c>strftime_now</c> globals, <c>tojson</c> as <c>json.dumps</c>, and the variables <c>messages</c>, <c>tools</c>,
/// <c>documents</c>, <c>add_generation_prompt</c> and the tokenizer's special tokens (<c>bos_token</c>, <c>eos_token</c>, ...).
/// Babel interprets the subset of Jinja2 that chat templates use (see <c>src/Modeling/Chat/README.md</c>).
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The file transformers writes a chat template to beside <c>tokenizer_config.json</c>; it wins over the config's.</summary>
    public const string TemplateFileName = "chat_template.jinja";

    private readonly JinjaTemplate _template;
    private readonly TimeProvider _clock;

    private ChatTemplate(JinjaTemplate template, string origin, TokenizerConfig? tokens, GenerationConfig? generation, TimeProvider clock)
    {
        _template = template;
        Origin = origin;
        BosToken = tokens?.BosToken;
        EosToken = tokens?.EosToken;
        UnkToken = tokens?.UnkToken;
        PadToken = tokens?.PadToken;
        EosTokenIds = generation?.EosTokenIds ?? [];
        _clock = clock;
    }

    /// <summary>Where the template came from, as errors name it (e.g. <c>tokenizer_config.json in 'models/qwen'</c>).</summary>
    public string Origin { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }
    public string? UnkToken { get; }
    public string? PadToken { get; }
    /// <summary>Every id that ends a generation, from <c>generation_config.json</c>'s <c>eos_token_id</c> (empty without one).</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>
    /// The chat template of <paramref name="modelFolder"/>: <c>chat_template.jinja</c> when present, else
    /// <c>chat_template</c> of <c>tokenizer_config.json</c> (a string, or the template named <c>default</c> of a list),
    /// with the special tokens of <c>tokenizer_config.json</c> and the EOS ids of <c>generation_config.json</c>.
    /// Null when the folder has no chat template.
    /// </summary>
    /// <param name="modelFolder">A Hugging Face model folder.</param>
    /// <param name="clock">The clock of <c>strftime_now</c> (today's date in Llama 3.x prompts); the system clock by default.</param>
    /// <exception cref="UserInputException">A file is unreadable or malformed, or the template has a syntax error (one sentence naming the file, line and column).</exception>
    public static ChatTemplate? Load(string modelFolder, TimeProvider? clock = null)
    {
        var tokens = TokenizerConfig.Load(modelFolder);
        var file = Path.Combine(modelFolder, TemplateFileName);
        string text, origin;
        if (File.Exists(file))
        {
            try
            {
                text = File.ReadAllText(file);
            }
            catch (IOException e)
            {
                throw new UserInputException($"{file} could not be read ({e.Message}); check the file and its permissions.", e);
            }
            origin = $"'{file}'";
        }
        else if (tokens?.ChatTemplate is { } configured)
        {
            text = configured;
            origin = $"{TokenizerConfig.FileName} in '{modelFolder}'";
        }
        else
        {
            if (tokens is { NamedChatTemplates.Count: > 0 })
            {
                throw new UserInputException(
                    $"{Path.Combine(modelFolder, TokenizerConfig.FileName)} lists chat templates ({string.Join(", ", tokens.NamedChatTemplates.Keys)}) but none named 'default'; name the one to use 'default'.");
            }
            return null;
        }
        return Parse(text, origin, tokens, GenerationConfig.Load(modelFolder), clock);
    }

    /// <summary>A template from its text; <paramref name="origin"/> names it in errors.</summary>
    /// <exception cref="UserInputException">The template has a syntax error or uses an unsupported filter, test or tag.</exception>
    public static ChatTemplate Parse(string text, string origin, TokenizerConfig? tokens = null, GenerationConfig? generation = null, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        try
        {
            return new ChatTemplate(JinjaTemplate.Parse(text), origin, tokens, generation, clock ?? TimeProvider.System);
        }
        catch (JinjaException e)
        {
            var normalized = JinjaLexer.Normalize(text);
            var (line, column) = JinjaTemplate.LineColumn(normalized, e.Position);
            var detail = Detail(e);
            throw new UserInputException(
                $"The chat template in {origin} cannot be used: {detail} (line {line}, column {column}); fix the template.",
                new ChatTemplateException(ChatTemplateFailure.Syntax, detail, line, column));
        }
    }

    /// <summary>The prompt for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/>, ending where the assistant's reply begins.</summary>
    /// <exception cref="UserInputException">The template refused the conversation or failed (one sentence naming it, the line and the column).</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var list = new JsonArray();
        foreach (var message in messages) list.Add(new JsonObject { ["role"] = message.Role, ["content"] = message.Content });
        return Render(list, addGenerationPrompt);
    }

    /// <summary>
    /// The prompt for <paramref name="messages"/> (objects as in OpenAI's and transformers' chat format: <c>role</c>,
    /// <c>content</c>, and e.g. <c>tool_calls</c>, <c>tool_call_id</c>), with <paramref name="tools"/> (JSON schemas of
    /// functions; the template sees <c>none</c> without them) and extra template <paramref name="variables"/> (e.g.
    /// <c>date_string</c>), which win over the standard ones.
    /// </summary>
    /// <exception cref="UserInputException">The template refused the conversation or failed (one sentence naming it, the line and the column).</exception>
    public string Render(JsonArray messages, bool addGenerationPrompt, JsonArray? tools = null, IReadOnlyDictionary<string, JsonNode?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var values = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = FromJson(messages),
            ["tools"] = tools is null ? null : FromJson(tools),
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (BosToken is not null) values["bos_token"] = BosToken;
        if (EosToken is not null) values["eos_token"] = EosToken;
        if (UnkToken is not null) values["unk_token"] = UnkToken;
        if (PadToken is not null) values["pad_token"] = PadToken;
        if (variables is not null) foreach (var (name, value) in variables) values[name] = FromJson(value);
        try
        {
            return _template.Render(values, _clock);
        }
        catch (JinjaException e)
        {
            var (line, column) = _template.LineColumn(e.Position);
            var detail = Detail(e);
            if (e is JinjaRaisedException)
            {
                throw new UserInputException($"The chat template in {Origin} refused the conversation at line {line}, column {column}: {detail}",
                    new ChatTemplateException(ChatTemplateFailure.Refused, detail, line, column));
            }
            throw new UserInputException($"The chat template in {Origin} failed at line {line}, column {column}: {detail}.",
                new ChatTemplateException(ChatTemplateFailure.Render, detail, line, column));
        }
    }

    private static string Detail(JinjaException e) => e is JinjaRaisedException ? e.Message : e.Message.TrimEnd('.');

    /// <summary>A JSON value as the Python value <c>json.loads</c> makes of it (integers stay integers, other numbers are floats).</summary>
    internal static object? FromJson(JsonNode? node) => node switch
    {
        null => null,
        JsonObject obj => ToDictionary(obj),
        JsonArray array => array.Select(FromJson).ToList(),
        JsonValue value => value.GetValueKind() switch
        {
            JsonValueKind.String => value.GetValue<string>(),
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Number => Number(value),
            _ => null,
        },
        _ => null,
    };

    private static OrderedDictionary<string, object?> ToDictionary(JsonObject obj)
    {
        var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in obj) dict[key] = FromJson(value);
        return dict;
    }

    private static object Number(JsonValue value)
    {
        if (!value.TryGetValue<JsonElement>(out var element))
        {
            // A value built in code rather than parsed: its CLR type tells a float from an integer.
            if (value.TryGetValue<double>(out var d)) return d;
            if (value.TryGetValue<float>(out var f)) return (double)f;
            if (value.TryGetValue<decimal>(out var m)) return (double)m;
            element = JsonElement.Parse(value.ToJsonString());
        }
        var text = element.GetRawText();
        if (!text.AsSpan().ContainsAny(".eE") && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer)) return integer;
        return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
