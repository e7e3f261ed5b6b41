using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Modeling.Distillation;
using Babel.Storage;

namespace Babel.Silo.Serving;

/// <summary>
/// The OpenAI-compatible API of a served model: <c>GET /v1/models</c>, <c>POST /v1/completions</c> and
/// <c>POST /v1/chat/completions</c> with <c>n</c>, <c>temperature</c>, <c>top_p</c>, <c>max_tokens</c>, <c>seed</c> and
/// <c>stop</c>, and token counts in <c>usage</c>. Chat messages are joined into one prompt (the models have no chat
/// template). When the key variable is set, every <c>/v1</c> request needs <c>Authorization: Bearer KEY</c>.
/// </summary>
public static class OpenAiEndpoints
{
    /// <summary>Loads the model and registers it for <see cref="MapOpenAiEndpoints"/>.</summary>
    public static IHostApplicationBuilder AddBabelServing(this IHostApplicationBuilder builder, ServingOptions options)
    {
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(_ => new ServedModel(options));
        return builder;
    }

    public static IEndpointRouteBuilder MapOpenAiEndpoints(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1");
        group.AddEndpointFilter(async (context, next) =>
        {
            var options = context.HttpContext.RequestServices.GetRequiredService<ServingOptions>();
            var key = Environment.GetEnvironmentVariable(options.ApiKeyVariable);
            if (!string.IsNullOrEmpty(key))
            {
                var header = context.HttpContext.Request.Headers.Authorization.ToString();
                var expected = Encoding.UTF8.GetBytes("Bearer " + key);
                if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header), expected))
                {
                    return Error(StatusCodes.Status401Unauthorized, "Missing or wrong bearer token.", "invalid_api_key");
                }
            }
            return await next(context);
        });
        group.MapGet("/models", (ServedModel model) => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject { ["id"] = model.Name, ["object"] = "model", ["owned_by"] = "babel", ["context_length"] = model.ContextLength }),
        }));
        group.MapPost("/completions", (HttpRequest request, ServedModel model, CancellationToken ct) => CompleteAsync(request, model, chat: false, ct));
        group.MapPost("/chat/completions", (HttpRequest request, ServedModel model, CancellationToken ct) => CompleteAsync(request, model, chat: true, ct));
        return endpoints;
    }

    private static async Task<IResult> CompleteAsync(HttpRequest http, ServedModel model, bool chat, CancellationToken cancellationToken)
    {
        JsonObject body;
        try
        {
            body = await JsonNode.ParseAsync(http.Body, cancellationToken: cancellationToken) as JsonObject
                ?? throw new UserInputException("The request body is not a JSON object.");
        }
        catch (JsonException e)
        {
            return Error(StatusCodes.Status400BadRequest, $"The request body is not valid JSON ({e.Message}).");
        }
        try
        {
            var name = body["model"]?.GetValue<string>();
            if (name is not null && name != model.Name) return Error(StatusCodes.Status404NotFound, $"The model '{name}' is not served here; this server serves '{model.Name}'.", "model_not_found");
            var prompts = chat ? [ChatPrompt(body)] : Prompts(body);
            var n = Int(body, "n", 1, 1, 128);
            var maxTokens = Int(body, "max_tokens", chat ? 256 : 16, 1, model.ContextLength - 1);
            var temperature = Number(body, "temperature", 1.0, 0, 2);
            var topP = Number(body, "top_p", 1.0, double.Epsilon, 1);
            long? seed = body["seed"] is null ? null : body["seed"]!.GetValue<long>();
            var stop = Stops(body);
            var requests = new List<TeacherRequest>();
            foreach (var prompt in prompts)
            {
                for (var i = 0; i < n; i++)
                {
                    // Without a seed each choice is random; with one, choice i uses seed + i, so a request is reproducible.
                    var rowSeed = seed is { } s ? s + i : Random.Shared.NextInt64(0, int.MaxValue);
                    requests.Add(new TeacherRequest(prompt, temperature, topP, maxTokens, rowSeed, stop));
                }
            }
            var results = await model.CompleteAsync(requests, cancellationToken);
            var choices = new JsonArray();
            long promptTokens = 0, completionTokens = 0;
            for (var i = 0; i < results.Count; i++)
            {
                var completion = results[i].Completion!;
                if (i % n == 0) promptTokens += completion.PromptTokens;
                completionTokens += completion.CompletionTokens;
                choices.Add(chat
                    ? new JsonObject { ["index"] = i, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = completion.Text }, ["finish_reason"] = completion.FinishReason }
                    : new JsonObject { ["index"] = i, ["text"] = completion.Text, ["logprobs"] = null, ["finish_reason"] = completion.FinishReason });
            }
            var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            return Results.Json(new JsonObject
            {
                ["id"] = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N"),
                ["object"] = chat ? "chat.completion" : "text_completion",
                ["created"] = created,
                ["model"] = model.Name,
                ["choices"] = choices,
                ["usage"] = new JsonObject { ["prompt_tokens"] = promptTokens, ["completion_tokens"] = completionTokens, ["total_tokens"] = promptTokens + completionTokens },
            });
        }
        catch (Exception e) when (e is UserInputException or InvalidOperationException or FormatException)
        {
            return Error(StatusCodes.Status400BadRequest, e.Message);
        }
    }

    private static string ChatPrompt(JsonObject body)
    {
        if (body["messages"] is not JsonArray { Count: > 0 } messages) throw new UserInputException("'messages' must be a non-empty array.");
        return string.Join("\n\n", messages.Select(m => m?["content"]?.GetValue<string>() ?? throw new UserInputException("Every message needs a string 'content'.")));
    }

    private static List<string> Prompts(JsonObject body) => body["prompt"] switch
    {
        JsonValue value when value.TryGetValue<string>(out var text) => [text],
        JsonArray { Count: > 0 } array => [.. array.Select(p => p?.GetValue<string>() ?? throw new UserInputException("'prompt' must be a string or an array of strings."))],
        _ => throw new UserInputException("'prompt' must be a string or an array of strings."),
    };

    private static List<string> Stops(JsonObject body) => body["stop"] switch
    {
        null => [],
        JsonValue value when value.TryGetValue<string>(out var text) => [text],
        JsonArray array => [.. array.Select(p => p?.GetValue<string>() ?? throw new UserInputException("'stop' must be a string or an array of strings."))],
        _ => throw new UserInputException("'stop' must be a string or an array of strings."),
    };

    private static int Int(JsonObject body, string name, int fallback, int min, int max)
    {
        var value = body[name] is null ? fallback : body[name]!.GetValue<int>();
        return value >= min && value <= max ? value : throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"'{name}' must be between {min} and {max} (got {value})."));
    }

    private static double Number(JsonObject body, string name, double fallback, double min, double max)
    {
        var value = body[name] is null ? fallback : body[name]!.GetValue<double>();
        return value >= min && value <= max ? value : throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"'{name}' must be between {min} and {max} (got {value})."));
    }

    private static IResult Error(int status, string message, string type = "invalid_request_error") =>
        Results.Json(new JsonObject { ["error"] = new JsonObject { ["message"] = message, ["type"] = type } }, statusCode: status);
}
