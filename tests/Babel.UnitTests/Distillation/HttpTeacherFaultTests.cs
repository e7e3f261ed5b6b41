using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Babel.Contracts;
using Babel.Grains.Distillation;
using Babel.Modeling.Distillation;
using Babel.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary>The openai teacher against a real HTTP endpoint that answers 429 (Retry-After), 500, malformed JSON and too late before it answers.</summary>
public class HttpTeacherFaultTests
{
    /// <summary>
    /// Per distinct request (prompt and seed): attempt 1 → 429 with Retry-After: 1, 2 → 500, 3 → malformed JSON, 4 → no answer
    /// within the client's timeout, 5 → a completion. A prompt naming POISON is always a 400.
    /// </summary>
    private sealed class FlakyTeacherServer : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentDictionary<string, int> _attempts = new(StringComparer.Ordinal);
        private int _answered;
        private readonly ConcurrentDictionary<string, bool> _answeredKeys = new(StringComparer.Ordinal);

        public FlakyTeacherServer()
        {
            var builder = WebApplication.CreateBuilder();
            builder.Logging.ClearProviders();
            Url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
            builder.WebHost.UseUrls(Url);
            _app = builder.Build();
            _app.MapGet("/v1/models", () => Results.Json(new JsonObject { ["data"] = new JsonArray() }));
            _app.MapPost("/v1/chat/completions", HandleAsync);
        }

        public string Url { get; }
        /// <summary>Completions sent, and the distinct requests they answered.</summary>
        public int Answered => Volatile.Read(ref _answered);
        public int AnsweredRequests => _answeredKeys.Count;
        public IReadOnlyDictionary<string, int> Attempts => _attempts;

        public Task StartAsync() => _app.StartAsync();

        private async Task<IResult> HandleAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            var body = (await JsonNode.ParseAsync(request.Body, cancellationToken: cancellationToken))!;
            var prompt = (string)body["messages"]![0]!["content"]!;
            if (prompt.Contains("POISON", StringComparison.Ordinal)) return Results.Json(new JsonObject { ["error"] = new JsonObject { ["message"] = "poisoned prompt" } }, statusCode: 400);
            var key = $"{(long)body["seed"]!}\n{prompt}";
            var attempt = _attempts.AddOrUpdate(key, 1, (_, n) => n + 1);
            switch (attempt)
            {
                case 1:
                    request.HttpContext.Response.Headers.RetryAfter = "1";
                    return Results.Json(new JsonObject { ["error"] = new JsonObject { ["message"] = "slow down" } }, statusCode: 429);
                case 2:
                    return Results.Text("upstream exploded", statusCode: 500);
                case 3:
                    return Results.Text("{\"choices\": [", "application/json");
                case 4:
                    await Task.Delay(TimeSpan.FromSeconds(60), cancellationToken);
                    return Results.Text("too late", statusCode: 500);
            }
            Interlocked.Increment(ref _answered);
            _answeredKeys[key] = true;
            var text = prompt.EndsWith("Evaluation:", StringComparison.Ordinal)
                ? " The sum is right. Evaluation result: the given answer is correct."
                : " 2 plus 2 is 4. The answer is 4.";
            return Results.Json(new JsonObject
            {
                ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text }, ["finish_reason"] = "stop" }),
                ["usage"] = new JsonObject { ["prompt_tokens"] = 100, ["completion_tokens"] = 10, ["total_tokens"] = 110 },
            });
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }

    [Fact]
    public async Task Retries_finish_the_dataset_and_permanent_failures_are_listed_with_the_reason()
    {
        using var scratch = new ScratchFolder();
        await using var server = new FlakyTeacherServer();
        await server.StartAsync();
        var dataset = scratch.Combine("data.jsonl");
        File.WriteAllLines(dataset,
        [
            """{"id": "ok", "question": "What is 2 plus 2?", "answer": "4"}""",
            """{"id": "bad", "question": "What is POISON?", "answer": "1"}""",
        ]);
        string[] Args(string output, params string[] extra) =>
        [
            "distill", "generate", "--teacher", $"openai:{server.Url}/v1", "--teacher-model", "flaky", "--dataset", "jsonl:" + dataset, "--task", "math",
            "--cots", "2", "--evals", "1", "--seed", "1", "--max-attempts", "6", "--request-timeout", "2", "--retry-delay", "0.01",
            // Two of the six calls fail for good (the poisoned question): above the default --max-failure-rate.
            "--requests-per-minute", "6000", "--max-failure-rate", "0.5", "--out", output, "--store", scratch.Combine("store"), .. extra,
        ];
        var (code, output, error) = await Task.Run(() => Run(Args(scratch.Combine("out"))));
        Assert.True(code == 0, error);
        Assert.Contains("2 failed calls", output, StringComparison.Ordinal);

        var cots = File.ReadAllLines(scratch.Combine("out/cots.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["ok/cot0", "ok/cot1"], cots.Select(c => (string)c["id"]!));
        Assert.All(cots, c => Assert.True((bool)c["correct"]!));
        var evaluations = File.ReadAllLines(scratch.Combine("out/evaluations.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["correct", "correct"], evaluations.Select(e => (string)e["label"]!));
        var failures = File.ReadAllLines(scratch.Combine("out/failures.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(2, failures.Count);
        Assert.All(failures, f =>
        {
            Assert.Equal("bad", (string)f["question_id"]!);
            Assert.Equal("cot", (string)f["role"]!);
            Assert.StartsWith("HTTP 400 from ", (string)f["reason"]!, StringComparison.Ordinal);
            Assert.Contains("poisoned prompt", (string)f["reason"]!, StringComparison.Ordinal);
        });
        // Every call needed five attempts: 429, 500, malformed, timeout, answer (a sixth only if a slow machine let an answer time out).
        Assert.Equal(4, server.AnsweredRequests);
        Assert.All(server.Attempts.Values, n => Assert.InRange(n, 5, 6));
        var answered = server.Answered;
        var manifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("out/manifest.json")))!;
        Assert.Equal(2, (long)manifest["counts"]!["cots_failed"]!);
        Assert.Equal(2, (long)manifest["counts"]!["failures"]!);
        Assert.Equal(1.0, (double)manifest["teacher_accuracy_parsed"]!);
        Assert.Equal(4 * 100, (long)manifest["tokens_in"]!);

        // A rerun as a new job answers from the cache: the server answers nothing more (the poisoned calls are tried again and fail again).
        (code, _, error) = await Task.Run(() => Run(Args(scratch.Combine("out2"), "--job-id", "distill-flaky-again")));
        Assert.True(code == 0, error);
        Assert.Equal(answered, server.Answered);
        Assert.Equal(File.ReadAllText(scratch.Combine("out/cots.jsonl")), File.ReadAllText(scratch.Combine("out2/cots.jsonl")));
        Assert.Equal(2, File.ReadAllLines(scratch.Combine("out2/failures.jsonl")).Length);
    }

    [Fact]
    public async Task A_429_with_retry_after_is_waited_out_exactly()
    {
        await using var server = new FlakyTeacherServer();
        await server.StartAsync();
        using var teacher = new OpenAiTeacher(new OpenAiTeacherOptions
        {
            BaseUrl = server.Url + "/v1", Model = "flaky", MaxAttempts = 2, BaseDelay = TimeSpan.FromMilliseconds(1), Timeout = TimeSpan.FromSeconds(2),
        });
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        var results = await teacher.CompleteAsync([new TeacherRequest("hello", 0, 1, 5, 7, [])], CancellationToken.None);
        // Two attempts: the 429 (Retry-After: 1 s is honoured), then the 500; the request fails with the last reason.
        Assert.True(stopwatch.Elapsed >= TimeSpan.FromSeconds(1), $"retried after {stopwatch.Elapsed}");
        Assert.Null(results[0].Completion);
        Assert.StartsWith("HTTP 500 from ", results[0].Error, StringComparison.Ordinal);
        Assert.EndsWith("gave up after 2 attempts", results[0].Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}""", "hi", 3, 1)]
    [InlineData("""{"choices":[{"text":"there","finish_reason":"length"}]}""", "there", 0, 0)]
    public void Completions_parse_from_chat_and_text_shapes(string json, string text, long prompt, long completion)
    {
        Assert.True(OpenAiTeacher.TryParse(json, out var parsed));
        Assert.Equal((text, prompt, completion), (parsed.Text, parsed.PromptTokens, parsed.CompletionTokens));
    }

    [Theory]
    [InlineData("{\"choices\": [")]
    [InlineData("{\"choices\": []}")]
    [InlineData("{\"error\": {\"message\": \"x\"}}")]
    [InlineData("[1, 2]")]
    [InlineData("{\"choices\": [{\"message\": {\"content\": 5}}]}")]
    public void Malformed_completions_do_not_parse(string json) => Assert.False(OpenAiTeacher.TryParse(json, out _));

    [Fact]
    public void The_token_bucket_spaces_requests_at_the_configured_rate()
    {
        var bucket = new TokenBucket();
        var t0 = DateTimeOffset.UnixEpoch;
        // 60 a minute: a full minute's burst, then one a second.
        for (var i = 0; i < 60; i++) Assert.Equal(TimeSpan.Zero, bucket.Reserve(60, 1, t0));
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.Reserve(60, 1, t0));
        Assert.Equal(TimeSpan.FromSeconds(2), bucket.Reserve(60, 1, t0));
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.Reserve(60, 1, t0 + TimeSpan.FromSeconds(2)));
        Assert.Equal(TimeSpan.Zero, new TokenBucket().Reserve(0, 1000, t0));
    }

    [Fact]
    public async Task The_rate_limit_grain_shares_one_budget_per_endpoint()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var grain = new TeacherRateLimitGrain(time);
        var limit = new TeacherRateLimit(RequestsPerMinute: 120, TokensPerMinute: 600);
        Assert.Equal(TimeSpan.Zero, await grain.ReserveAsync(limit, 1, 600));
        // Tokens are the binding budget: 300 more tokens at 10 a second is 30 s of debt.
        Assert.Equal(TimeSpan.FromSeconds(30), await grain.ReserveAsync(limit, 1, 300));
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(TimeSpan.Zero, await grain.ReserveAsync(limit, 1, 0));
    }

    [Theory]
    [InlineData("--task", "poetry", "Unknown task 'poetry'; use --task math, choice or nli.")]
    [InlineData("--dataset", "jsonl:/no/such/file.jsonl", "The dataset file /no/such/file.jsonl does not exist")]
    [InlineData("--teacher", "gpt:x", "--teacher 'gpt:x' is not understood")]
    [InlineData("--cots", "0", "--cots must be at least 1")]
    public void Bad_input_is_one_sentence_and_exit_code_2(string option, string value, string expected)
    {
        using var scratch = new ScratchFolder();
        var dataset = DistillLocalTeacherTests.WriteMathDataset(scratch);
        var args = new Dictionary<string, string>
        {
            ["--teacher"] = "openai:http://127.0.0.1:1/v1", ["--teacher-model"] = "m", ["--dataset"] = "jsonl:" + dataset, ["--task"] = "math",
            ["--out"] = scratch.Combine("out"), ["--store"] = scratch.Combine("store"),
        };
        args[option] = value;
        var (code, _, error) = Run(["distill", "generate", .. args.SelectMany(a => new[] { a.Key, a.Value })]);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Fact]
    public void An_invalid_jsonl_line_is_named_and_an_unreachable_teacher_is_one_sentence()
    {
        using var scratch = new ScratchFolder();
        var dataset = scratch.Combine("broken.jsonl");
        File.WriteAllText(dataset, "{\"id\": \"a\", \"question\": \"Q\", \"answer\": 1}\n{\"id\": \"b\", \"question\": \n");
        var (code, _, error) = Run("distill", "generate", "--teacher", "openai:http://127.0.0.1:1/v1", "--teacher-model", "m", "--dataset", "jsonl:" + dataset, "--out", scratch.Combine("out"));
        Assert.Equal(2, code);
        Assert.Contains($"{dataset} line 2 is not valid JSON", error, StringComparison.Ordinal);

        var good = DistillLocalTeacherTests.WriteMathDataset(scratch);
        var port = LoopbackPorts.Free();
        (code, _, error) = Run("distill", "generate", "--teacher", $"openai:http://127.0.0.1:{port}/v1", "--teacher-model", "m", "--dataset", "jsonl:" + good, "--out", scratch.Combine("out"));
        Assert.Equal(2, code);
        Assert.StartsWith($"error: Could not reach the teacher at http://127.0.0.1:{port}/v1 (", error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
    }
}
