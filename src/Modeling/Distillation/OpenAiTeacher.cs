using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>How an <see cref="OpenAiTeacher"/> talks to its endpoint. Defaults suit a hosted API; tests shorten the delays.</summary>
public sealed record OpenAiTeacherOptions
{
    /// <summary>Base URL including <c>/v1</c>, e.g. <c>http://127.0.0.1:8000/v1</c>.</summary>
    public required string BaseUrl { get; init; }
    public required string Model { get; init; }
    /// <summary>Bearer token; never logged or written anywhere (an answer that echoes it has it replaced by <c>[redacted]</c>).</summary>
    public string? ApiKey { get; init; }
    /// <summary><c>chat</c> (POST /chat/completions, the prompt as one user message) or <c>completions</c> (POST /completions).</summary>
    public string Api { get; init; } = "chat";
    public int MaxAttempts { get; init; } = 6;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan BaseDelay { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Requests in flight at once from one caller.</summary>
    public int Concurrency { get; init; } = 8;
}

/// <summary>
/// A teacher behind an OpenAI-compatible API (OpenAI, vLLM, TGI, llama.cpp server, <c>babel serve</c>). Each request is
/// retried up to <see cref="OpenAiTeacherOptions.MaxAttempts"/> on 429, 408, 5xx, timeouts, connection errors and malformed
/// JSON, with exponential backoff and full jitter, waiting exactly as long as a <c>Retry-After</c> header asks; other 4xx fail
/// the request at once. An optional <see cref="ITeacherRateLimiter"/> is asked before every attempt. Redirects are not
/// followed (a teacher host cannot send the request elsewhere), and the part of an answer kept as a failure's reason is
/// bounded and has its credentials removed.
/// </summary>
public sealed partial class OpenAiTeacher : ITeacher
{
    /// <summary>Characters of a response kept in a failure's reason.</summary>
    public const int SnippetLength = 120;
    private const string Redacted = "[redacted]";

    private readonly OpenAiTeacherOptions _options;
    private readonly HttpClient _http;
    private readonly ITeacherRateLimiter? _limiter;
    private readonly Random _jitter = new();

    public OpenAiTeacher(OpenAiTeacherOptions options, ITeacherRateLimiter? limiter = null, HttpMessageHandler? handler = null)
    {
        _options = options;
        _limiter = limiter;
        _http = new HttpClient(handler ?? NoRedirects());
        // Per-request timeouts are our own, so a retry can follow a timeout.
        _http.Timeout = System.Threading.Timeout.InfiniteTimeSpan;
        Endpoint = new Uri(options.BaseUrl.TrimEnd('/') + (options.Api == "completions" ? "/completions" : "/chat/completions"));
    }

    public Uri Endpoint { get; }

    public string Identity => $"openai:{_options.BaseUrl.TrimEnd('/')}#{_options.Model}#{_options.Api}";

    public async Task<IReadOnlyList<TeacherResult>> CompleteAsync(IReadOnlyList<TeacherRequest> requests, CancellationToken cancellationToken)
    {
        var results = new TeacherResult[requests.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, requests.Count),
            new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, _options.Concurrency), CancellationToken = cancellationToken },
            async (i, token) => results[i] = await CompleteOneAsync(requests[i], token));
        return results;
    }

    private async Task<TeacherResult> CompleteOneAsync(TeacherRequest request, CancellationToken cancellationToken)
    {
        var body = Body(request).ToJsonString();
        // Prompt tokens are not known before the call; about 4 characters a token is the usual estimate.
        var estimatedTokens = request.Prompt.Length / 4 + request.MaxTokens;
        string? lastError = null;
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            if (_limiter is not null)
            {
                var wait = await _limiter.ReserveAsync(1, estimatedTokens, cancellationToken);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken);
            }
            TimeSpan? retryAfter = null;
            var stopwatch = Stopwatch.StartNew();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.Timeout);
            try
            {
                using var message = new HttpRequestMessage(HttpMethod.Post, Endpoint) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                if (!string.IsNullOrEmpty(_options.ApiKey)) message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.ApiKey);
                using var response = await _http.SendAsync(message, timeout.Token);
                var text = await response.Content.ReadAsStringAsync(timeout.Token);
                DistillationMetrics.Latency.Record(stopwatch.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("teacher", "openai"));
                if (response.IsSuccessStatusCode)
                {
                    if (TryParse(text, out var completion))
                    {
                        if (!string.IsNullOrEmpty(_options.ApiKey) && completion.Text.Contains(_options.ApiKey, StringComparison.Ordinal))
                        {
                            completion = completion with { Text = completion.Text.Replace(_options.ApiKey, Redacted, StringComparison.Ordinal) };
                        }
                        DistillationMetrics.TeacherRequests.Add(1, Tag("ok"));
                        DistillationMetrics.TokensIn.Add(completion.PromptTokens);
                        DistillationMetrics.TokensOut.Add(completion.CompletionTokens);
                        return new TeacherResult(completion, null);
                    }
                    lastError = $"malformed response from {Endpoint} ({Snippet(text, _options.ApiKey)})";
                }
                else
                {
                    var status = (int)response.StatusCode;
                    lastError = $"HTTP {status} from {Endpoint} ({Snippet(text, _options.ApiKey)})";
                    if (response.StatusCode == HttpStatusCode.TooManyRequests) DistillationMetrics.Throttled.Add(1);
                    var transient = response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout || status >= 500;
                    if (!transient)
                    {
                        DistillationMetrics.TeacherRequests.Add(1, Tag("failed"));
                        return TeacherResult.Failed(lastError);
                    }
                    retryAfter = RetryAfter(response.Headers.RetryAfter);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                lastError = $"no response from {Endpoint} within {_options.Timeout.TotalSeconds:0.###} s";
            }
            catch (HttpRequestException e)
            {
                lastError = $"could not reach {Endpoint} ({e.Message})";
            }
            if (attempt == _options.MaxAttempts) break;
            DistillationMetrics.TeacherRequests.Add(1, Tag("retry"));
            DistillationMetrics.Retries.Add(1);
            await Task.Delay(retryAfter ?? Backoff(attempt), cancellationToken);
        }
        DistillationMetrics.TeacherRequests.Add(1, Tag("failed"));
        return TeacherResult.Failed($"{lastError}; gave up after {_options.MaxAttempts} attempts");
    }

    /// <summary>Exponential backoff with full jitter: uniform in [0, min(max, base·2^(attempt-1))].</summary>
    private TimeSpan Backoff(int attempt)
    {
        var ceiling = Math.Min(_options.MaxDelay.TotalMilliseconds, _options.BaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1));
        double fraction;
        lock (_jitter) fraction = _jitter.NextDouble();
        return TimeSpan.FromMilliseconds(ceiling * fraction);
    }

    private TimeSpan? RetryAfter(RetryConditionHeaderValue? header)
    {
        var wait = header?.Delta ?? (header?.Date is { } date ? date - DateTimeOffset.UtcNow : null);
        if (wait is null) return null;
        if (wait < TimeSpan.Zero) wait = TimeSpan.Zero;
        // A server asking for longer than our cap is still honoured up to the cap; the attempt bound ends the wait.
        return wait > _options.MaxDelay ? _options.MaxDelay : wait;
    }

    private JsonObject Body(TeacherRequest request)
    {
        var body = new JsonObject
        {
            ["model"] = _options.Model,
            ["temperature"] = request.Temperature,
            ["top_p"] = request.TopP,
            ["max_tokens"] = request.MaxTokens,
            ["seed"] = request.Seed,
            ["n"] = 1,
        };
        if (request.Stop.Count > 0) body["stop"] = new JsonArray([.. request.Stop.Select(s => (JsonNode)s)]);
        if (_options.Api == "completions") body["prompt"] = request.Prompt;
        else body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = request.Prompt });
        return body;
    }

    /// <summary>Reads choices[0] (message.content or text), finish_reason and usage; false when the JSON is not a completion.</summary>
    public static bool TryParse(string json, out TeacherCompletion completion)
    {
        completion = null!;
        try
        {
            if (JsonNode.Parse(json) is not JsonObject root || root["choices"] is not JsonArray { Count: > 0 } choices || choices[0] is not JsonObject choice) return false;
            var text = choice["message"]?["content"]?.GetValue<string>() ?? choice["text"]?.GetValue<string>();
            if (text is null) return false;
            var usage = root["usage"] as JsonObject;
            completion = new TeacherCompletion(text,
                usage?["prompt_tokens"]?.GetValue<long>() ?? 0,
                usage?["completion_tokens"]?.GetValue<long>() ?? 0,
                choice["finish_reason"]?.GetValue<string>() ?? "");
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    /// <summary>
    /// What of a response is kept in a failure's reason: its credentials removed first (the key wherever it appears, and the
    /// value after any <c>Authorization</c> or <c>api-key</c> name), then at most <see cref="SnippetLength"/> characters.
    /// </summary>
    public static string Snippet(string text, string? apiKey)
    {
        var flat = text.ReplaceLineEndings(" ");
        if (!string.IsNullOrEmpty(apiKey)) flat = flat.Replace(apiKey, Redacted, StringComparison.Ordinal);
        flat = CredentialValue().Replace(flat, "${name}${sep}" + Redacted).Trim();
        return flat.Length <= SnippetLength ? flat : string.Create(CultureInfo.InvariantCulture, $"{flat[..SnippetLength]}…");
    }

    [GeneratedRegex("""(?<name>(?:proxy-)?authorization|(?:x-)?api[-_]?key)(?<sep>["']?\s*[:=]\s*["']?)(?:(?:bearer|basic)\s+)?[^\s"',;}]+""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex CredentialValue();

    /// <summary>
    /// Asks the endpoint for its models before a job starts, so a teacher that does not answer, refuses the key (HTTP 401 or
    /// 403), has no models list (404: the URL is wrong) or does not serve the model fails at once with one sentence. Other
    /// answers (429, 5xx) are left to the job's retries. With <paramref name="checkKey"/> false the key is not sent and a
    /// refusal is accepted: the workers hold the key.
    /// </summary>
    public static async Task ProbeAsync(OpenAiTeacherOptions options, bool checkKey, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(NoRedirects()) { Timeout = TimeSpan.FromSeconds(10) };
        var url = options.BaseUrl.TrimEnd('/') + "/models";
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (checkKey && !string.IsNullOrEmpty(options.ApiKey)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
        HttpResponseMessage response;
        string text;
        try
        {
            response = await http.SendAsync(request, cancellationToken);
            text = await response.Content.ReadAsStringAsync(cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new UserInputException($"Could not reach the teacher at {options.BaseUrl} ({e.Message}); start the server or fix the URL after --teacher openai:.", e);
        }
        using (response)
        {
            var status = (int)response.StatusCode;
            if (checkKey && response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                throw new UserInputException(string.IsNullOrEmpty(options.ApiKey)
                    ? $"The teacher at {options.BaseUrl} wants an API key (HTTP {status}); set it in the environment variable named by --api-key-env."
                    : $"The teacher at {options.BaseUrl} refused the API key (HTTP {status}); check the key in the environment variable named by --api-key-env.");
            }
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                throw new UserInputException($"The teacher at {options.BaseUrl} has no models list (HTTP 404 for {url}); check the URL after --teacher openai: (it usually ends in /v1).");
            }
            if (response.IsSuccessStatusCode && ServedModels(text) is { Count: > 0 } served && !served.Contains(options.Model))
            {
                throw new UserInputException($"The teacher at {options.BaseUrl} does not serve the model '{options.Model}' (it serves {string.Join(", ", served.Take(10))}); fix --teacher-model.");
            }
        }
    }

    /// <summary>The ids of an OpenAI models list (<c>data[].id</c>); empty when the answer is not one.</summary>
    private static IReadOnlyList<string> ServedModels(string json)
    {
        try
        {
            return JsonNode.Parse(json) is JsonObject root && root["data"] is JsonArray data
                ? [.. data.OfType<JsonObject>().Select(m => m["id"]).OfType<JsonValue>().Select(v => v.TryGetValue<string>(out var id) ? id : null).OfType<string>()]
                : [];
        }
        catch (JsonException)
        {
            return [];
        }
    }

    private static SocketsHttpHandler NoRedirects() => new() { AllowAutoRedirect = false };

    private static KeyValuePair<string, object?>[] Tag(string outcome) => [new("teacher", "openai"), new("outcome", outcome)];

    public void Dispose() => _http.Dispose();
}
