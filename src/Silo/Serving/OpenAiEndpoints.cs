using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Babel.Silo.Serving;

/// <summary>
/// The OpenAI-compatible API of a served model: <c>GET /v1/models</c>, <c>POST /v1/completions</c> and
/// <c>POST /v1/chat/completions</c> with <c>n</c>, <c>temperature</c>, <c>top_p</c>, <c>max_tokens</c>, <c>seed</c>,
/// <c>stop</c> and <c>stream</c> (server-sent events), and token counts in <c>usage</c>. Chat messages go through the model
/// folder's chat template when it has one, else they are joined into one prompt. When the key variable is set, every <c>/v1</c> request needs
/// <c>Authorization: Bearer KEY</c>. Every refusal is OpenAI's error object with one sentence: 400 for a malformed request
/// or one over a <see cref="ServingOptions"/> limit, 413 for a body over the size limit, 429 with <c>Retry-After</c> when
/// the queue is full; a failure of the server is 500 with no details (they go to the log).
/// </summary>
public static partial class OpenAiEndpoints
{
    private static readonly byte[] Done = Encoding.UTF8.GetBytes("data: [DONE]\n\n");
    // The answers are JSON and event streams, never HTML: quotes and apostrophes need no \u escapes.
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Binds <see cref="ServingOptions"/> from <c>Babel:Serving</c>, then <paramref name="configure"/> (the command's flags), and
    /// registers the model for <see cref="MapOpenAiEndpoints"/>. Bad options throw
    /// <see cref="OptionsValidationException"/> here, before the model loads.
    /// </summary>
    public static IHostApplicationBuilder AddBabelServing(this IHostApplicationBuilder builder, Action<ServingOptions> configure)
    {
        BoundOptions.Bind(builder.Configuration, ServingOptions.Section, new ServingOptionsValidator(), configure);
        BoundOptions.AddValidated<ServingOptions, ServingOptionsValidator>(builder.Services, ServingOptions.Section).Configure(configure);
        builder.Services.AddSingleton<ServedModel>();
        builder.Services.AddHostedService<ServingMetrics.ZeroCounters>();
        return builder;
    }

    public static IEndpointRouteBuilder MapOpenAiEndpoints(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1");
        group.AddEndpointFilter(async (context, next) =>
        {
            var options = context.HttpContext.RequestServices.GetRequiredService<IOptions<ServingOptions>>().Value;
            var key = Environment.GetEnvironmentVariable(options.ApiKeyVariable);
            if (!string.IsNullOrEmpty(key))
            {
                var header = context.HttpContext.Request.Headers.Authorization.ToString();
                var expected = Encoding.UTF8.GetBytes("Bearer " + key);
                if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header), expected))
                {
                    // Neither the expected key nor what the client sent is echoed.
                    var error = new OpenAiError(StatusCodes.Status401Unauthorized, "Missing or wrong bearer token; send Authorization: Bearer with the server's key.", code: "invalid_api_key");
                    return Results.Json(error.ToJson(), Relaxed, statusCode: error.Status);
                }
            }
            return await next(context);
        });
        group.MapGet("/models", (ServedModel model) => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject { ["id"] = model.Name, ["object"] = "model", ["owned_by"] = "babel", ["context_length"] = model.ContextLength }),
        }, Relaxed));
        group.MapPost("/completions", (HttpContext http, ServedModel model, IOptions<ServingOptions> options, ILoggerFactory logs) =>
            CompleteAsync(http, model, options.Value, chat: false, logs.CreateLogger(typeof(OpenAiEndpoints))));
        group.MapPost("/chat/completions", (HttpContext http, ServedModel model, IOptions<ServingOptions> options, ILoggerFactory logs) =>
            CompleteAsync(http, model, options.Value, chat: true, logs.CreateLogger(typeof(OpenAiEndpoints))));
        return endpoints;
    }

    private static async Task CompleteAsync(HttpContext http, ServedModel model, ServingOptions options, bool chat, ILogger logger)
    {
        var aborted = http.RequestAborted;
        var outcome = "ok";
        try
        {
            var body = await ReadBodyAsync(http, options.MaxRequestBodyBytes, aborted);
            var request = CompletionRequest.Parse(body, chat, model, options);
            var rows = new List<CompletionRow>(request.Prompts.Count * request.N);
            foreach (var prompt in request.Prompts)
            {
                for (var i = 0; i < request.N; i++)
                {
                    // Without a seed each choice is random; with one, choice i uses seed + i, so a request is reproducible.
                    var seed = request.Seed is { } s ? s + i : Random.Shared.NextInt64(0, int.MaxValue);
                    rows.Add(new CompletionRow(prompt, request.Temperature, request.TopP, request.MaxTokens, seed, request.Stop));
                }
            }
            var deltas = request.Stream ? Channel.CreateUnbounded<CompletionDelta>(new UnboundedChannelOptions { SingleReader = true }) : null;
            var done = model.TryEnqueue(rows, deltas?.Writer, aborted) ?? throw new OpenAiError(StatusCodes.Status429TooManyRequests,
                string.Create(CultureInfo.InvariantCulture, $"The server's queue is full ({options.MaxQueuedRequests} requests waiting, max_queued_requests); retry after the Retry-After delay."),
                "rate_limit_error", "max_queued_requests") { RetryAfter = model.RetryAfter };
            var response = new ResponseShape(chat, (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N"), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), model.Name);
            if (deltas is not null)
            {
                await StreamAsync(http, response, request, deltas.Reader, done, aborted);
            }
            else
            {
                var results = await done;
                await WriteJsonAsync(http, StatusCodes.Status200OK, response.Completion(results, request.N));
            }
        }
        catch (OpenAiError e)
        {
            outcome = e.Status switch
            {
                StatusCodes.Status413PayloadTooLarge => "too_large",
                StatusCodes.Status429TooManyRequests => "queue_full",
                _ => "invalid",
            };
            if (e.RetryAfter is { } retry) http.Response.Headers.RetryAfter = ((int)retry.TotalSeconds).ToString(CultureInfo.InvariantCulture);
            await WriteJsonAsync(http, e.Status, e.ToJson());
        }
        catch (Exception e) when (aborted.IsCancellationRequested && e is OperationCanceledException or IOException)
        {
            // The client left; its rows stopped (or will at the next step) and nobody reads an answer.
            outcome = "abandoned";
        }
        catch (Exception e)
        {
            outcome = "failed";
            LogFailure(logger, e);
            var error = new OpenAiError(StatusCodes.Status500InternalServerError, "The server failed to complete the request; its log has the details.", "server_error");
            if (!http.Response.HasStarted) await WriteJsonAsync(http, error.Status, error.ToJson());
            else await WriteEventAsync(http, error.ToJson(), CancellationToken.None);
        }
        finally
        {
            ServingMetrics.Requests.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        }
    }

    /// <summary>The body as a JSON object, read up to <paramref name="limit"/> bytes: 413 beyond it, 400 unless it is UTF-8 JSON holding an object.</summary>
    private static async Task<JsonObject> ReadBodyAsync(HttpContext http, long limit, CancellationToken cancellationToken)
    {
        var tooLarge = new OpenAiError(StatusCodes.Status413PayloadTooLarge,
            string.Create(CultureInfo.InvariantCulture, $"The request body is larger than this server's limit of {limit} bytes (max_request_body_bytes); send a smaller request."),
            code: "max_request_body_bytes");
        if (http.Request.ContentLength > limit) throw tooLarge;
        // Kestrel then stops reading a chunked body at the limit too, instead of at its 30 MB default.
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size) size.MaxRequestBodySize = limit;
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await http.Request.Body.ReadAsync(chunk, cancellationToken)) > 0)
            {
                if (buffer.Length + read > limit) throw tooLarge;
                buffer.Write(chunk, 0, read);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw tooLarge;
        }
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        // A UTF-8 byte order mark is allowed before JSON (RFC 8259 lets parsers ignore it); the parser itself does not skip it.
        if (bytes.Span.StartsWith(Encoding.UTF8.Preamble)) bytes = bytes[Encoding.UTF8.Preamble.Length..];
        if (!Utf8.IsValid(bytes.Span))
            throw new OpenAiError(StatusCodes.Status400BadRequest, "The request body is not valid UTF-8; send JSON encoded as UTF-8.");
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(bytes.Span);
        }
        catch (JsonException e)
        {
            // Where, not what: the position helps the client and echoes none of its text.
            throw new OpenAiError(StatusCodes.Status400BadRequest, string.Create(CultureInfo.InvariantCulture,
                $"The request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}); send one JSON object."));
        }
        return node as JsonObject ?? throw new OpenAiError(StatusCodes.Status400BadRequest,
            $"The request body must be a JSON object (got {(node is null ? "null" : node.GetValueKind() switch { JsonValueKind.Array => "an array", JsonValueKind.String => "a string", JsonValueKind.Number => "a number", _ => "a boolean" })}).");
    }

    /// <summary>
    /// Server-sent events as OpenAI streams them: <c>data: {chunk}</c> per piece of text (<c>choices[].delta.content</c> for
    /// chat, <c>choices[].text</c> for completions), a last chunk per choice with its <c>finish_reason</c>, the usage chunk when
    /// <c>stream_options.include_usage</c> asks for it, then <c>data: [DONE]</c>.
    /// </summary>
    private static async Task StreamAsync(HttpContext http, ResponseShape response, CompletionRequest request, ChannelReader<CompletionDelta> deltas,
        Task<IReadOnlyList<ServedCompletion>> done, CancellationToken cancellationToken)
    {
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var choices = request.Prompts.Count * request.N;
        if (response.Chat)
        {
            for (var i = 0; i < choices; i++) await WriteEventAsync(http, response.Chunk(i, "", null, role: true), cancellationToken);
        }
        else
        {
            // Headers go out now, so a client sees the stream open before the first token.
            await http.Response.StartAsync(cancellationToken);
        }
        await foreach (var delta in deltas.ReadAllAsync(cancellationToken))
        {
            if (delta.Text.Length > 0) await WriteEventAsync(http, response.Chunk(delta.Row, delta.Text, null), cancellationToken);
            if (delta.FinishReason is not null) await WriteEventAsync(http, response.Chunk(delta.Row, "", delta.FinishReason), cancellationToken);
        }
        var results = await done;
        if (request.IncludeUsage) await WriteEventAsync(http, response.UsageChunk(results, request.N), cancellationToken);
        await http.Response.Body.WriteAsync(Done, cancellationToken);
        await http.Response.Body.FlushAsync(cancellationToken);
    }

    private static async Task WriteEventAsync(HttpContext http, JsonObject data, CancellationToken cancellationToken)
    {
        await http.Response.WriteAsync("data: " + data.ToJsonString(Relaxed) + "\n\n", cancellationToken);
        await http.Response.Body.FlushAsync(cancellationToken);
    }

    private static async Task WriteJsonAsync(HttpContext http, int status, JsonObject json)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json; charset=utf-8";
        await http.Response.WriteAsync(json.ToJsonString(Relaxed), CancellationToken.None);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "A completion request failed")]
    private static partial void LogFailure(ILogger logger, Exception exception);

    /// <summary>The id, time and model every object of one response repeats, and OpenAI's shapes of them.</summary>
    private sealed record ResponseShape(bool Chat, string Id, long Created, string Model)
    {
        public JsonObject Completion(IReadOnlyList<ServedCompletion> results, int n)
        {
            var choices = new JsonArray();
            for (var i = 0; i < results.Count; i++)
            {
                var completion = results[i];
                choices.Add(Chat
                    ? new JsonObject { ["index"] = i, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = completion.Text }, ["finish_reason"] = completion.FinishReason }
                    : new JsonObject { ["index"] = i, ["text"] = completion.Text, ["logprobs"] = null, ["finish_reason"] = completion.FinishReason });
            }
            var json = Header(Chat ? "chat.completion" : "text_completion");
            json["choices"] = choices;
            json["usage"] = Usage(results, n);
            return json;
        }

        public JsonObject Chunk(int index, string text, string? finishReason, bool role = false)
        {
            JsonObject choice;
            if (Chat)
            {
                var delta = new JsonObject();
                if (role) delta["role"] = "assistant";
                if (role || text.Length > 0) delta["content"] = text;
                choice = new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finishReason };
            }
            else
            {
                choice = new JsonObject { ["index"] = index, ["text"] = text, ["logprobs"] = null, ["finish_reason"] = finishReason };
            }
            var json = Header(Chat ? "chat.completion.chunk" : "text_completion");
            json["choices"] = new JsonArray(choice);
            return json;
        }

        public JsonObject UsageChunk(IReadOnlyList<ServedCompletion> results, int n)
        {
            var json = Header(Chat ? "chat.completion.chunk" : "text_completion");
            json["choices"] = new JsonArray();
            json["usage"] = Usage(results, n);
            return json;
        }

        private JsonObject Header(string type) => new() { ["id"] = Id, ["object"] = type, ["created"] = Created, ["model"] = Model };

        private static JsonObject Usage(IReadOnlyList<ServedCompletion> results, int n)
        {
            // A prompt counts once however many choices it has.
            long prompt = results.Where((_, i) => i % n == 0).Sum(r => (long)r.PromptTokens);
            long completion = results.Sum(r => (long)r.CompletionTokens);
            return new JsonObject { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };
        }
    }
}
