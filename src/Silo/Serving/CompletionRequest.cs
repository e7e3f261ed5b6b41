using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Storage;

namespace Babel.Silo.Serving;

/// <summary>
/// A request the server refuses, answered with OpenAI's error object
/// (<c>{"error": {"message", "type", "param", "code"}}</c>). The message is one sentence for the client; it never holds a
/// stack trace, a header or a server path.
/// </summary>
internal sealed class OpenAiError(int status, string message, string type = OpenAiError.InvalidRequest, string? code = null, string? param = null)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";

    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Code { get; } = code;
    public string? Param { get; } = param;
    /// <summary>Sent as the <c>Retry-After</c> header (whole seconds) of a 429.</summary>
    public TimeSpan? RetryAfter { get; init; }

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code },
    };
}

/// <summary>
/// A <c>/v1/completions</c> or <c>/v1/chat/completions</c> request, type-checked, tokenized and within the server's
/// <see cref="ServingOptions"/> limits: choices (prompts × <c>n</c>), tokens of a prompt, <c>max_tokens</c>, and prompt plus
/// <c>max_tokens</c> within the model's context. Chat messages go through the model's chat template when its folder has
/// one (with <c>add_generation_prompt</c>, and the request's <c>tools</c>); otherwise they are joined into one prompt.
/// </summary>
internal sealed record CompletionRequest(
    IReadOnlyList<int[]> Prompts, int N, int MaxTokens, double Temperature, double TopP, long? Seed, IReadOnlyList<string> Stop, bool Stream, bool IncludeUsage)
{
    /// <summary>OpenAI's own limit on stop sequences.</summary>
    public const int MaxStops = 4;

    private const int ChatDefaultMaxTokens = 256;
    private const int CompletionDefaultMaxTokens = 16;

    /// <summary>Checks and tokenizes <paramref name="body"/>; throws <see cref="OpenAiError"/> naming the first problem.</summary>
    public static CompletionRequest Parse(JsonObject body, bool chat, ServedModel model, ServingOptions limits)
    {
        try
        {
            return Checked(body, chat, model, limits);
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json reads an escaped lone surrogate ("\ud800") only when the string is asked for.
            throw new OpenAiError(StatusCodes.Status400BadRequest, "A string in the request body is not valid Unicode (it holds a lone surrogate escape); send valid text.");
        }
    }

    private static CompletionRequest Checked(JsonObject body, bool chat, ServedModel model, ServingOptions limits)
    {
        var name = Text(body, "model");
        // The requested name is not repeated: an error echoes nothing the client sent.
        if (name is not null && name != model.Name)
            throw new OpenAiError(StatusCodes.Status404NotFound, $"The requested model is not served here; this server serves '{model.Name}'.", code: "model_not_found", param: "model");
        List<PromptInput> texts = chat ? [ChatPrompt(body, model)] : [.. PromptTexts(body).Select(text => new PromptInput(text, null, null))];
        var n = Integer(body, "n") ?? 1;
        if (n < 1) throw Invalid(Invariant($"'n' must be 1 or more (got {n})."), "n");
        var choices = (long)texts.Count * n;
        if (choices > limits.MaxChoicesPerRequest)
        {
            throw Limit(Invariant($"The request asks for {choices} completions ({texts.Count} prompt(s) × n {n}), above this server's limit of {limits.MaxChoicesPerRequest} per request; lower n or send fewer prompts."),
                "max_choices_per_request", "n");
        }
        var temperature = Number(body, "temperature") ?? 1.0;
        if (temperature is < 0 or > 2) throw Invalid(Invariant($"'temperature' must be between 0 and 2 (got {temperature})."), "temperature");
        var topP = Number(body, "top_p") ?? 1.0;
        if (topP is <= 0 or > 1) throw Invalid(Invariant($"'top_p' must be above 0 and at most 1 (got {topP})."), "top_p");
        var seed = Long(body, "seed");
        var stop = Stops(body);
        var stream = Boolean(body, "stream") ?? false;
        var includeUsage = body["stream_options"] switch
        {
            null => false,
            JsonObject options => Boolean(options, "include_usage", "stream_options.include_usage") ?? false,
            var other => throw Invalid($"'stream_options' must be an object (got {Kind(other)}).", "stream_options"),
        };
        // Chat's newer name for the same bound; max_tokens wins when both are given, as OpenAI's own server does.
        var maxTokensName = chat && body["max_tokens"] is null && body["max_completion_tokens"] is not null ? "max_completion_tokens" : "max_tokens";
        var requested = Integer(body, maxTokensName);
        if (requested < 1) throw Invalid(Invariant($"'{maxTokensName}' must be 1 or more (got {requested})."), maxTokensName);
        if (requested > limits.MaxCompletionTokens)
        {
            throw Limit(Invariant($"'{maxTokensName}' is {requested}, above this server's limit of {limits.MaxCompletionTokens} (max_completion_tokens); ask for fewer tokens."),
                "max_completion_tokens", maxTokensName);
        }

        var promptParam = chat ? "messages" : "prompt";
        var prompts = new List<int[]>(texts.Count);
        foreach (var text in texts)
        {
            int[] ids;
            try
            {
                // A chat template writes the special tokens itself (BOS included), as transformers' apply_chat_template does.
                ids = text.Messages is { } messages ? ChatIds(model, messages, text.Tools) : model.Tokenize(text.Text!);
            }
            catch (ArgumentException)
            {
                throw Invalid($"A {(chat ? "message" : "prompt")} could not be tokenized; send valid Unicode text (no lone surrogate escapes).", promptParam);
            }
            if (ids.Length == 0) throw Invalid("The model's chat template made an empty prompt of these messages; send a message with content.", promptParam);
            if (ids.Length > limits.MaxPromptTokens)
            {
                throw Limit(Invariant($"A prompt has {ids.Length} tokens, above this server's limit of {limits.MaxPromptTokens} per prompt (max_prompt_tokens); shorten it."),
                    "max_prompt_tokens", promptParam);
            }
            prompts.Add(ids);
        }
        var longest = prompts.Max(p => p.Length);
        var context = model.ContextLength;
        // An unstated max_tokens takes OpenAI's default, shortened to the room the prompt leaves.
        var maxTokens = requested ?? Math.Max(1, Math.Min(Math.Min(chat ? ChatDefaultMaxTokens : CompletionDefaultMaxTokens, limits.MaxCompletionTokens), context - longest));
        if (longest + maxTokens > context)
        {
            throw Limit(Invariant($"This model's maximum context length is {context} tokens, but the request asks for {longest + maxTokens} ({longest} in the longest prompt, {maxTokens} for the completion); shorten the prompt or lower max_tokens."),
                "context_length_exceeded", promptParam);
        }
        return new CompletionRequest(prompts, n, maxTokens, temperature, topP, seed, stop, stream, includeUsage);
    }

    /// <summary>A prompt as the request gives it: a completion's text, or a chat's checked messages and tools.</summary>
    private sealed record PromptInput(string? Text, JsonArray? Messages, JsonArray? Tools);

    private static PromptInput ChatPrompt(JsonObject body, ServedModel model)
    {
        if (body["messages"] is not JsonArray { Count: > 0 } messages)
            throw Invalid($"'messages' must be a non-empty array of messages (got {Kind(body["messages"])}).", "messages");
        if (model.ChatTemplate is null)
        {
            // Joined by the model's prompt format: only the contents count, and each must be a string.
            if (!messages.All(m => m is JsonObject message && message["content"] is JsonValue content && content.TryGetValue<string>(out _)))
                throw Invalid("Every message must be an object with a string 'content'.", "messages");
            return new PromptInput(null, messages, null);
        }
        var conversation = new JsonArray();
        foreach (var item in messages)
        {
            if (item is not JsonObject message || message["role"] is not JsonValue role || !role.TryGetValue<string>(out _))
                throw Invalid("Every message must be an object with a string 'role'.", "messages");
            var copy = message.DeepClone().AsObject();
            copy["content"] = message["content"] switch
            {
                null => null,
                JsonValue value when value.TryGetValue<string>(out var text) => text,
                // OpenAI's content parts: the text parts, one after another, as vLLM gives them to a chat template.
                JsonArray parts => string.Join("\n", parts.Select(part => part is JsonObject { } p && p["type"] is JsonValue type && type.TryGetValue<string>(out var kind) && kind == "text"
                    && p["text"] is JsonValue partText && partText.TryGetValue<string>(out var textValue)
                    ? textValue
                    : throw Invalid("A message's content parts must be text parts ({\"type\": \"text\", \"text\": ...}); other kinds are not supported.", "messages"))),
                var other => throw Invalid($"A message's 'content' must be a string, an array of text parts or null (got {Kind(other)}).", "messages"),
            };
            conversation.Add(copy);
        }
        var tools = body["tools"] switch
        {
            null => null,
            JsonArray array => array,
            var other => throw Invalid($"'tools' must be an array of tool definitions (got {Kind(other)}).", "tools"),
        };
        return new PromptInput(null, conversation, tools);
    }

    private static int[] ChatIds(ServedModel model, JsonArray messages, JsonArray? tools)
    {
        try
        {
            return model.TokenizeChat(messages, tools);
        }
        catch (UserInputException e) when (e.InnerException is ChatTemplateException details)
        {
            // The template's own words, and its line: never the model folder's path.
            throw Invalid(details.Failure == ChatTemplateFailure.Refused
                ? $"The model's chat template refused these messages: {details.Detail}"
                : Invariant($"The model's chat template could not render these messages ({details.Detail}, at line {details.Line}, column {details.Column} of the template)."), "messages");
        }
    }

    private static List<string> PromptTexts(JsonObject body) => body["prompt"] switch
    {
        JsonValue value when value.TryGetValue<string>(out var text) => [text],
        JsonArray { Count: > 0 } array when array.All(p => p is JsonValue v && v.TryGetValue<string>(out _)) => [.. array.Select(p => p!.GetValue<string>())],
        JsonArray { Count: > 0 } => throw Invalid("'prompt' must be a string or an array of strings; token-id prompts are not supported.", "prompt"),
        var other => throw Invalid($"'prompt' must be a string or a non-empty array of strings (got {Kind(other)}).", "prompt"),
    };

    private static List<string> Stops(JsonObject body)
    {
        List<string> stops = body["stop"] switch
        {
            null => [],
            JsonValue value when value.TryGetValue<string>(out var text) => [text],
            JsonArray array when array.All(p => p is JsonValue v && v.TryGetValue<string>(out _)) => [.. array.Select(p => p!.GetValue<string>())],
            var other => throw Invalid($"'stop' must be a string or an array of strings (got {Kind(other)}).", "stop"),
        };
        if (stops.Count > MaxStops) throw Invalid(Invariant($"'stop' may hold at most {MaxStops} strings (got {stops.Count})."), "stop");
        // An empty stop string would cut every completion to nothing.
        if (stops.Any(s => s.Length == 0)) throw Invalid("'stop' strings must not be empty.", "stop");
        return stops;
    }

    private static string? Text(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw Invalid($"'{name}' must be a string (got {Kind(other)}).", name),
    };

    private static int? Integer(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        var other => throw Invalid($"'{name}' must be a whole number from {int.MinValue} to {int.MaxValue} (got {NotWhole(other)}).", name),
    };

    private static long? Long(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<long>(out var i) => i,
        var other => throw Invalid($"'{name}' must be a whole number from {long.MinValue} to {long.MaxValue} (got {NotWhole(other)}).", name),
    };

    private static double? Number(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        var other => throw Invalid($"'{name}' must be a number (got {Kind(other)}).", name),
    };

    private static bool? Boolean(JsonObject body, string name, string? param = null) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var other => throw Invalid($"'{param ?? name}' must be true or false (got {Kind(other)}).", param ?? name),
    };

    /// <summary>What a client sent, in a few words (never the value itself, which can be long).</summary>
    private static string Kind(JsonNode? node) => node?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "nothing",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        var kind => kind.ToString()!.ToLowerInvariant(),
    };

    private static string NotWhole(JsonNode? node) => node?.GetValueKind() == JsonValueKind.Number ? "a fraction or a number out of range" : Kind(node);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static OpenAiError Invalid(string message, string param) => new(StatusCodes.Status400BadRequest, message, param: param);

    private static OpenAiError Limit(string message, string code, string param) => new(StatusCodes.Status400BadRequest, message, code: code, param: param);
}
