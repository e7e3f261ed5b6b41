using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Babel.Silo.Serving;
using Microsoft.Extensions.Options;
using Xunit;

namespace Babel.UnitTests.Serving;

/// <summary>What one request may make <c>babel serve</c> do, and how it refuses the rest: 400, 413 and 429 as OpenAI's error object.</summary>
public class ServeLimitsTests
{
    private static void AssertError(int status, JsonNode body, int expectedStatus, string? code = null, string? mentions = null)
    {
        Assert.True(status == expectedStatus, $"Expected {expectedStatus}, got {status}: {body.ToJsonString()}");
        var error = body["error"]!;
        var message = (string)error["message"]!;
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.DoesNotContain("Exception", message, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", body.ToJsonString(), StringComparison.Ordinal);
        if (code is not null) Assert.Equal(code, (string?)error["code"]);
        if (mentions is not null) Assert.Contains(mentions, message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_over_a_work_limit_is_400_naming_the_limit_and_its_value()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch, o =>
        {
            o.MaxChoicesPerRequest = 4;
            o.MaxPromptTokens = 100;
            o.MaxCompletionTokens = 100;
        });
        var (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "the cat", ["n"] = 5, ["max_tokens"] = 2 });
        AssertError(status, body, 400, "max_choices_per_request", "limit of 4");
        Assert.Equal("n", (string?)body["error"]!["param"]);
        // Prompts × n counts, not n alone.
        (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = new JsonArray("a", "b"), ["n"] = 3, ["max_tokens"] = 2 });
        AssertError(status, body, 400, "max_choices_per_request", "6 completions");
        (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "the cat", ["max_tokens"] = 101 });
        AssertError(status, body, 400, "max_completion_tokens", "limit of 100");

        // Prompts measured in the model's tokens: one of ~60 fits the prompt limit but not with 100 new tokens in a context of 128.
        var sentence = "the cat number 3 sat on the mat ";
        var medium = string.Concat(Enumerable.Repeat(sentence, 60 / (api.Model.Tokenize(sentence).Length - 1)));
        var mediumTokens = api.Model.Tokenize(medium).Length;
        Assert.InRange(mediumTokens, 29, 100);
        (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = medium, ["max_tokens"] = 100 });
        AssertError(status, body, 400, "context_length_exceeded", $"maximum context length is 128 tokens, but the request asks for {mediumTokens + 100}");
        (status, body) = await api.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = medium }), ["max_tokens"] = 100,
        });
        AssertError(status, body, 400, "context_length_exceeded", "128");
        Assert.Equal("messages", (string?)body["error"]!["param"]);
        var huge = medium + medium + medium + medium;
        (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = huge, ["max_tokens"] = 1 });
        AssertError(status, body, 400, "max_prompt_tokens", $"A prompt has {api.Model.Tokenize(huge).Length} tokens, above this server's limit of 100");

        // Within every limit the same requests are answered; an unstated max_tokens shrinks to the room the prompt leaves.
        (status, body) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = new JsonArray("a", "b"), ["n"] = 2, ["max_tokens"] = 2, ["temperature"] = 0 });
        Assert.Equal(200, status);
        Assert.Equal(4, body["choices"]!.AsArray().Count);
        (status, body) = await api.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = medium }), ["temperature"] = 0,
        });
        Assert.True(status == 200, body.ToJsonString());
        Assert.InRange((long)body["usage"]!["completion_tokens"]!, 1, 128 - mediumTokens);
    }

    [Theory]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("null", "must be a JSON object")]
    [InlineData("\"the cat\"", "must be a JSON object")]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("{\"prompt\": \"x\", \"n\": \"x\"}", "'n' must be a whole number")]
    [InlineData("{\"prompt\": \"x\", \"n\": 1.5}", "'n' must be a whole number")]
    [InlineData("{\"prompt\": \"x\", \"max_tokens\": [3]}", "'max_tokens' must be a whole number")]
    [InlineData("{\"prompt\": \"x\", \"temperature\": \"hot\"}", "'temperature' must be a number")]
    [InlineData("{\"prompt\": \"x\", \"seed\": {}}", "'seed' must be a whole number")]
    [InlineData("{\"prompt\": \"x\", \"stream\": \"yes\"}", "'stream' must be true or false")]
    [InlineData("{\"prompt\": \"x\", \"stop\": [1]}", "'stop' must be a string or an array of strings")]
    [InlineData("{\"prompt\": \"x\", \"stop\": \"\"}", "'stop' strings must not be empty")]
    [InlineData("{\"prompt\": \"x\", \"model\": 7}", "'model' must be a string")]
    [InlineData("{\"prompt\": 5}", "'prompt' must be a string")]
    [InlineData("{\"prompt\": [1, 2, 3]}", "token-id prompts are not supported")]
    [InlineData("{\"prompt\": \"\\ud800\"}", "not valid Unicode")]
    [InlineData("{\"prompt\": \"x\", \"stream_options\": 1}", "'stream_options' must be an object")]
    public async Task A_malformed_completion_request_is_400_with_one_sentence(string json, string expected)
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch);
        var (status, body) = await api.SendAsync("/v1/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        AssertError(status, body, 400, mentions: expected);
    }

    [Fact]
    public async Task Malformed_chat_messages_invalid_utf8_and_deep_nesting_are_400()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch);
        foreach (var (json, expected) in new[]
        {
            ("{\"messages\": 5}", "'messages' must be a non-empty array"),
            ("{\"messages\": []}", "'messages' must be a non-empty array"),
            ("{\"messages\": [5]}", "Every message must be an object with a string 'content'"),
            ("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "Every message must be an object with a string 'content'"),
            ("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": \"many\"}", "'max_completion_tokens' must be a whole number"),
            (new string('[', 100) + new string(']', 100), "not valid JSON"),
        })
        {
            var (status, body) = await api.SendAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
            AssertError(status, body, 400, mentions: expected);
        }
        // Bytes that are not UTF-8 inside a JSON string.
        byte[] invalid = [.. "{\"prompt\": \""u8, 0xFF, 0xFE, 0xC3, .. "\"}"u8];
        var (invalidStatus, invalidBody) = await api.SendAsync("/v1/completions", ServedApi.Raw(invalid));
        AssertError(invalidStatus, invalidBody, 400, mentions: "not valid UTF-8");
        // A byte order mark before the JSON is allowed.
        byte[] marked = [0xEF, 0xBB, 0xBF, .. "{\"prompt\": \"the cat\", \"max_tokens\": 1}"u8];
        Assert.Equal(200, (await api.SendAsync("/v1/completions", ServedApi.Raw(marked))).Status);
    }

    [Fact]
    public async Task A_body_over_the_size_limit_is_413_with_or_without_a_content_length()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch, o => o.MaxRequestBodyBytes = 4096);
        var big = new JsonObject { ["prompt"] = new string('a', 5000), ["max_tokens"] = 1 }.ToJsonString();
        var (status, body) = await api.SendAsync("/v1/completions", new StringContent(big, Encoding.UTF8, "application/json"));
        AssertError(status, body, 413, "max_request_body_bytes", "limit of 4096 bytes");
        // Chunked transfer: no Content-Length, so the limit applies while reading.
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new ChunkedContent(Encoding.UTF8.GetBytes(big)) })
        {
            using var response = await api.Http.SendAsync(request);
            Assert.True(request.Headers.TransferEncodingChunked, "The body went without a Content-Length.");
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            Assert.Contains("max_request_body_bytes", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        // Just under the limit is served.
        var fits = new JsonObject { ["prompt"] = "the cat", ["max_tokens"] = 1, ["user"] = new string('a', 3000) }.ToJsonString();
        Assert.True(Encoding.UTF8.GetByteCount(fits) < 4096);
        Assert.Equal(200, (await api.SendAsync("/v1/completions", new StringContent(fits, Encoding.UTF8, "application/json"))).Status);
    }

    [Fact]
    public async Task Errors_never_echo_the_bearer_key()
    {
        using var scratch = new ScratchFolder();
        var keyVariable = "BABEL_TEST_SERVE_KEY_" + Guid.NewGuid().ToString("N");
        const string Key = "sk-serve-secret-4711";
        const string WrongKey = "sk-client-guess-0815";
        await using var api = await ServedApi.StartAsync(scratch, apiKeyVariable: keyVariable);
        Environment.SetEnvironmentVariable(keyVariable, Key);
        try
        {
            foreach (var (key, json, expected) in new[]
            {
                (WrongKey, "{\"prompt\": \"x\"}", HttpStatusCode.Unauthorized),
                (Key, "{\"prompt\": \"x\", \"n\": \"" + Key + "\"}", HttpStatusCode.BadRequest),
                (Key, "{\"prompt\": \"x\", \"model\": \"" + Key + "-model\"}", HttpStatusCode.NotFound),
                (Key, "{\"prompt\": \"" + Key, HttpStatusCode.BadRequest),
            })
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                using var response = await api.Http.SendAsync(request);
                var text = await response.Content.ReadAsStringAsync();
                Assert.Equal(expected, response.StatusCode);
                Assert.NotNull(JsonNode.Parse(text)!["error"]!["message"]);
                Assert.DoesNotContain(Key, text, StringComparison.Ordinal);
                Assert.DoesNotContain(WrongKey, text, StringComparison.Ordinal);
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(keyVariable, null);
        }
    }

    [Fact]
    public async Task A_full_queue_is_429_with_retry_after_and_a_client_that_leaves_frees_its_place()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch, o =>
        {
            o.MaxQueuedRequests = 1;
            o.MaxCompletionTokens = 4000;
        }, maxBatch: 1, contextLength: 4096);
        var endless = new JsonObject { ["prompt"] = ServedApi.EndlessPrompt, ["max_tokens"] = 4000, ["temperature"] = 0 };
        // A keeps the generation thread busy; B waits in the queue, which is then full.
        using var leaveA = new CancellationTokenSource();
        using var leaveB = new CancellationTokenSource();
        var a = api.Http.PostAsync("/v1/completions", ServedApi.Json(endless), leaveA.Token);
        await ServedApi.UntilAsync(() => api.Model.ActiveRows == 1, TimeSpan.FromSeconds(30), "A is generating");
        var b = api.Http.PostAsync("/v1/completions", ServedApi.Json(endless), leaveB.Token);
        await ServedApi.UntilAsync(() => api.Model.QueuedRequests == 1, TimeSpan.FromSeconds(30), "B waits in the queue");

        using (var c = await api.Http.PostAsync("/v1/completions", ServedApi.Json(new JsonObject { ["prompt"] = "x", ["max_tokens"] = 1 })))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, c.StatusCode);
            var retryAfter = c.Headers.RetryAfter?.Delta;
            Assert.NotNull(retryAfter);
            Assert.InRange(retryAfter.Value, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));
            var error = JsonNode.Parse(await c.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("max_queued_requests", (string?)error["code"]);
            Assert.Contains("queue is full (1 requests waiting", (string)error["message"]!, StringComparison.Ordinal);
        }

        // B's client leaves: its place is free at once (A still generating), and the next request takes it.
        await leaveB.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b);
        await ServedApi.UntilAsync(() => api.Model.QueuedRequests == 0, TimeSpan.FromSeconds(30), "B has left the queue");
        Assert.Equal(1, api.Model.ActiveRows);
        using var leaveD = new CancellationTokenSource();
        var d = api.Http.PostAsync("/v1/completions", ServedApi.Json(endless), leaveD.Token);
        await ServedApi.UntilAsync(() => api.Model.QueuedRequests == 1, TimeSpan.FromSeconds(30), "D waits in the queue");
        Assert.False(d.IsCompleted);
        await leaveD.CancelAsync();
        await leaveA.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.WhenAll(a, d));
        await ServedApi.UntilAsync(() => api.Model.ActiveRows == 0 && api.Model.QueuedRequests == 0, TimeSpan.FromSeconds(30), "the server is idle");
    }

    [Fact]
    public void Bad_serving_options_are_refused_with_one_sentence_each_naming_the_flag()
    {
        var result = new ServingOptionsValidator().Validate(Options.DefaultName, new ServingOptions
        {
            ModelFolder = "m", Name = "n", MaxBatch = 0, MaxQueuedRequests = 0, MaxChoicesPerRequest = -1, MaxPromptTokens = 1, MaxCompletionTokens = 0, MaxRequestBodyBytes = 10,
        });
        Assert.Equal(
        [
            "Babel:Serving:MaxBatch (--max-batch) is 0; set 1 or more.",
            "Babel:Serving:MaxQueuedRequests (--max-queue) is 0; set 1 or more.",
            "Babel:Serving:MaxChoicesPerRequest (--max-choices) is -1; set 1 or more.",
            "Babel:Serving:MaxPromptTokens (--max-prompt-tokens) is 1; set 2 or more.",
            "Babel:Serving:MaxCompletionTokens (--max-completion-tokens) is 0; set 1 or more.",
            "Babel:Serving:MaxRequestBodyBytes (--max-body-bytes) is 10; set 1024 or more.",
        ], result.Failures);
        Assert.True(new ServingOptionsValidator().Validate(Options.DefaultName, new ServingOptions { ModelFolder = "m", Name = "n" }).Succeeded);
    }

    [Fact]
    public void Babel_serve_refuses_a_bad_limit_flag_with_its_sentence_and_exit_code_2()
    {
        using var scratch = new ScratchFolder();
        var (model, _) = Jobs.JobTestInputs.Write(scratch);
        var (code, _, error) = CliRun.Run(["serve", "--model", model, "--urls", "http://127.0.0.1:1", "--max-queue", "0", "--store", scratch.Combine("store")]);
        Assert.Equal(2, code);
        Assert.Equal("error: Babel:Serving:MaxQueuedRequests (--max-queue) is 0; set 1 or more.", error.Trim());
    }

    /// <summary>A body of unknown length, so HttpClient sends it chunked.</summary>
    private sealed class ChunkedContent(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context) => stream.WriteAsync(bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
