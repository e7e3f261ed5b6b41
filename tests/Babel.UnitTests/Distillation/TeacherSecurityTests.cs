using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Babel.Client;
using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Silo;
using Babel.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary>
/// The teacher perimeter (issue 15): which key variables and hosts a job may use, what a failure may store, and a wrong
/// key, model or URL failing at once; each against a real HTTP endpoint on 127.0.0.1.
/// </summary>
public class TeacherSecurityTests
{
    /// <summary>
    /// An OpenAI-compatible endpoint that records every Authorization header it is sent. <c>/v1/models</c> wants the
    /// expected key (when one is set) and lists <c>good-model</c>. A prompt naming ECHO is answered 400 with the request's
    /// credentials echoed back, one naming REDIRECT with a 307 to <c>/sink</c>, which counts the requests that follow it.
    /// </summary>
    private sealed class RecordingTeacher : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _sinkHits;

        public RecordingTeacher(string? expectedKey)
        {
            var builder = WebApplication.CreateBuilder();
            builder.Logging.ClearProviders();
            Url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
            builder.WebHost.UseUrls(Url);
            _app = builder.Build();
            _app.MapGet("/v1/models", (HttpRequest request) =>
                expectedKey is not null && request.Headers.Authorization != $"Bearer {expectedKey}"
                    ? Results.Json(new JsonObject { ["error"] = new JsonObject { ["message"] = "invalid api key" } }, statusCode: 401)
                    : Results.Json(new JsonObject { ["data"] = new JsonArray(new JsonObject { ["id"] = "good-model" }) }));
            _app.MapPost("/v1/chat/completions", HandleAsync);
            _app.MapPost("/sink", () =>
            {
                Interlocked.Increment(ref _sinkHits);
                return Completion();
            });
        }

        public string Url { get; }
        public ConcurrentBag<string> Authorizations { get; } = [];
        public int SinkHits => Volatile.Read(ref _sinkHits);

        public Task StartAsync() => _app.StartAsync();

        private async Task<IResult> HandleAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            var authorization = request.Headers.Authorization.ToString();
            Authorizations.Add(authorization);
            var prompt = (string)(await JsonNode.ParseAsync(request.Body, cancellationToken: cancellationToken))!["messages"]![0]!["content"]!;
            if (prompt.Contains("ECHO", StringComparison.Ordinal))
            {
                var key = authorization.Replace("Bearer ", "", StringComparison.Ordinal);
                return Results.Text($$"""{"echo": "Authorization: {{authorization}}", "api-key": "{{key}}", "raw": "{{key}}", "padding": "{{new string('x', 500)}}"}""", "application/json", statusCode: 400);
            }
            if (prompt.Contains("REDIRECT", StringComparison.Ordinal)) return Results.Redirect("/sink", permanent: false, preserveMethod: true);
            return Completion();
        }

        private static IResult Completion() => Results.Json(new JsonObject
        {
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = " The answer is 4." }, ["finish_reason"] = "stop" }),
            ["usage"] = new JsonObject { ["prompt_tokens"] = 10, ["completion_tokens"] = 5 },
        });

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }

    /// <summary>An environment variable of this process for the duration of a test.</summary>
    private sealed class Variable : IDisposable
    {
        public Variable(string prefix, string value)
        {
            Name = prefix + Guid.NewGuid().ToString("N")[..12].ToUpperInvariant();
            Value = value;
            Environment.SetEnvironmentVariable(Name, value);
        }

        public string Name { get; }
        public string Value { get; }

        public void Dispose() => Environment.SetEnvironmentVariable(Name, null);
    }

    private static string Dataset(ScratchFolder scratch, params string[] questions)
    {
        var file = scratch.Combine("data.jsonl");
        File.WriteAllLines(file, questions.Select((q, i) => $$"""{"id": "q{{i}}", "question": "{{q}}", "answer": "4"}"""));
        return file;
    }

    private static string[] Args(ScratchFolder scratch, RecordingTeacher teacher, string dataset, params string[] extra) =>
        Args(scratch, $"{teacher.Url}/v1", "good-model", dataset, extra);

    private static string[] Args(ScratchFolder scratch, string url, string model, string dataset, params string[] extra) =>
    [
        "distill", "generate", "--teacher", $"openai:{url}", "--teacher-model", model, "--dataset", "jsonl:" + dataset, "--task", "math",
        "--cots", "1", "--evals", "1", "--max-attempts", "1", "--out", scratch.Combine("out"), "--store", scratch.Combine("store"), .. extra,
    ];

    /// <summary>The run ended with <paramref name="expectedCode"/> and one error line; an input error (2) prints nothing else.</summary>
    private static void AssertOneSentence(int expectedCode, (int Code, string Output, string Error) run, string expected)
    {
        Assert.True(run.Code == expectedCode, $"exit {run.Code}: {run.Error}");
        var lines = run.Error.Trim().Split('\n');
        if (expectedCode == 2) Assert.Single(lines);
        Assert.StartsWith("error: ", lines[^1], StringComparison.Ordinal);
        Assert.Contains(expected, lines[^1], StringComparison.Ordinal);
        Assert.Equal(1, lines.Count(l => l.StartsWith("error: ", StringComparison.Ordinal)));
        Assert.Empty(run.Output);
    }

    [Fact]
    public async Task A_wrong_key_fails_at_once_with_one_sentence()
    {
        using var scratch = new ScratchFolder();
        await using var teacher = new RecordingTeacher(expectedKey: "right-key");
        await teacher.StartAsync();
        using var key = new Variable(TeacherAccess.KeyVariablePrefix, "wrong-key");
        var run = await Task.Run(() => Run(Args(scratch, teacher, Dataset(scratch, "What is 2 plus 2?"), "--api-key-env", key.Name)));
        AssertOneSentence(2, run, "refused the API key (HTTP 401)");
        Assert.Empty(teacher.Authorizations);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Fact]
    public async Task A_model_the_teacher_does_not_serve_and_a_url_without_a_models_list_fail_at_once()
    {
        using var scratch = new ScratchFolder();
        await using var teacher = new RecordingTeacher(expectedKey: null);
        await teacher.StartAsync();
        var dataset = Dataset(scratch, "What is 2 plus 2?");
        var run = await Task.Run(() => Run(Args(scratch, $"{teacher.Url}/v1", "no-such-model", dataset)));
        AssertOneSentence(2, run, "does not serve the model 'no-such-model' (it serves good-model)");
        run = await Task.Run(() => Run(Args(scratch, $"{teacher.Url}/v2", "good-model", dataset)));
        AssertOneSentence(2, run, "has no models list (HTTP 404");
        Assert.Empty(teacher.Authorizations);
    }

    [Fact]
    public async Task A_key_variable_the_silo_does_not_allow_is_never_read_nor_sent_by_the_command_or_a_worker()
    {
        using var scratch = new ScratchFolder();
        await using var teacher = new RecordingTeacher(expectedKey: null);
        await teacher.StartAsync();
        using var secret = new Variable("BABEL_TEST_STORAGE_SECRET_", "storage-account-key-" + Guid.NewGuid().ToString("N"));
        var dataset = Dataset(scratch, "What is 2 plus 2?");
        var run = await Task.Run(() => Run(Args(scratch, teacher, dataset, "--api-key-env", secret.Name)));
        AssertOneSentence(2, run, $"The environment variable '{secret.Name}' may not hold a teacher key on this silo");

        // A job submitted without the command's checks (as a client of another build could) is refused by the worker itself.
        await using var engine = await EngineConnection.OpenAsync(cluster: false, scratch.Combine("store"), workers: 1);
        var kind = engine.Jobs.Kinds.Get<DistillJob>();
        var allowed = await kind.PrepareAsync(engine.Jobs, new DistillJobParameters("openai", "", "", "jsonl", "train", "math", BaseUrl: teacher.Url + "/v1",
            TeacherModel: "good-model", Cots: 1, Evaluations: 1, MaxAttempts: 1), dataset, null, cluster: false, CancellationToken.None);
        var failed = await Assert.ThrowsAsync<JobFailedException>(() =>
            engine.Jobs.RunAsync(kind, allowed with { ApiKeyVariable = secret.Name }, new JobOptions(MaxAttempts: 1), progress: null));
        Assert.Contains($"The environment variable '{secret.Name}' may not hold a teacher key on this silo", failed.Message);
        Assert.DoesNotContain(teacher.Authorizations, a => a.Contains(secret.Value, StringComparison.Ordinal));
        Assert.Empty(teacher.Authorizations);
    }

    [Fact]
    public void A_teacher_host_the_silo_does_not_list_is_refused_before_any_request()
    {
        using var scratch = new ScratchFolder();
        var dataset = Dataset(scratch, "What is 2 plus 2?");
        // 10.255.255.1 does not answer: a request would wait out the probe's timeout; the refusal is immediate.
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        var run = Run("distill", "generate", "--teacher", "openai:http://10.255.255.1/v1", "--teacher-model", "m", "--dataset", "jsonl:" + dataset,
            "--out", scratch.Combine("out"), "--store", scratch.Combine("store"));
        AssertOneSentence(2, run, "The teacher host '10.255.255.1' is not allowed on this silo");
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(9), $"took {stopwatch.Elapsed}");
    }

    [Theory]
    [InlineData("http://127.0.0.1:8000/v1", null)]
    [InlineData("http://localhost:8000/v1", null)]
    [InlineData("http://[::1]:8000/v1", null)]
    [InlineData("https://api.example.com/v1", null)]
    [InlineData("http://api.example.com/v1", "Plain http to the teacher host 'api.example.com' is not allowed")]
    [InlineData("https://other.example.com/v1", "The teacher host 'other.example.com' is not allowed")]
    [InlineData("https://127.0.0.1.example.com/v1", "The teacher host '127.0.0.1.example.com' is not allowed")]
    [InlineData("http://user:secret@127.0.0.1:8000/v1", "carries a user name or password")]
    [InlineData("ftp://127.0.0.1/v1", "is not an http(s) URL")]
    public void Loopback_is_allowed_and_other_hosts_only_when_listed_over_https(string url, string? refusal)
    {
        var access = new TeacherAccess(["api.example.com"], [], plainHttp: false);
        if (refusal is null) Assert.Equal(new Uri(url), access.CheckEndpoint(url));
        else Assert.Contains(refusal, Assert.Throws<UserInputException>(() => access.CheckEndpoint(url)).Message);
        Assert.Equal(new Uri("http://api.example.com/v1"), new TeacherAccess(["API.example.com"], [], plainHttp: true).CheckEndpoint("http://api.example.com/v1"));
    }

    [Fact]
    public void Key_variables_are_those_under_the_prefix_and_those_the_silo_lists()
    {
        using var listed = new Variable("OPENAI_TEST_KEY_", "sk-listed");
        using var prefixed = new Variable(TeacherAccess.KeyVariablePrefix, "sk-prefixed");
        var access = new TeacherAccess([], [listed.Name], plainHttp: false);
        Assert.Equal("sk-listed", access.ReadKey(listed.Name));
        Assert.Equal("sk-prefixed", access.ReadKey(prefixed.Name));
        Assert.Null(access.ReadKey(TeacherAccess.KeyVariablePrefix + "UNSET_" + Guid.NewGuid().ToString("N")));
        Assert.Contains("may not hold a teacher key", Assert.Throws<UserInputException>(() => TeacherAccess.Default.ReadKey(listed.Name)).Message);
        Assert.Contains("may not hold a teacher key", Assert.Throws<UserInputException>(() => access.ReadKey("BABEL_STORAGE_CONNECTION_STRING")).Message);
        Assert.Contains("not an environment variable name", Assert.Throws<UserInputException>(() => access.ReadKey("A=B")).Message);
    }

    [Fact]
    public async Task Stored_failure_reasons_are_bounded_never_echo_the_key_and_redirects_are_not_followed()
    {
        using var scratch = new ScratchFolder();
        await using var teacher = new RecordingTeacher(expectedKey: null);
        await teacher.StartAsync();
        using var key = new Variable(TeacherAccess.KeyVariablePrefix, "sk-" + Guid.NewGuid().ToString("N"));
        var dataset = Dataset(scratch, "What is ECHO?", "What is REDIRECT?", "What is 2 plus 2?");
        var run = await Task.Run(() => Run(Args(scratch, teacher, dataset, "--api-key-env", key.Name, "--max-failure-rate", "1")));
        Assert.True(run.Code == 0, run.Error);
        Assert.Contains($"Bearer {key.Value}", teacher.Authorizations);

        var failures = File.ReadAllLines(scratch.Combine("out/failures.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["q0", "q1"], failures.Select(f => (string)f["question_id"]!));
        var echoed = (string)failures[0]["reason"]!;
        Assert.StartsWith("HTTP 400 from ", echoed, StringComparison.Ordinal);
        Assert.Contains("[redacted]", echoed, StringComparison.Ordinal);
        Assert.DoesNotContain("Bearer", echoed, StringComparison.Ordinal);
        var snippet = echoed[(echoed.IndexOf('(', StringComparison.Ordinal) + 1)..echoed.LastIndexOf(')')];
        Assert.InRange(snippet.Length, 1, OpenAiTeacher.SnippetLength + 1);
        Assert.StartsWith("HTTP 307 from ", (string)failures[1]["reason"]!, StringComparison.Ordinal);
        Assert.Equal(0, teacher.SinkHits);
        foreach (var file in Directory.GetFiles(scratch.Combine("out"), "*", SearchOption.AllDirectories))
        {
            Assert.DoesNotContain(key.Value, File.ReadAllText(file), StringComparison.Ordinal);
        }
        Assert.Equal(1, DistillationManifest.Load(scratch.Combine("out")).Counts.Cots);
    }

    [Fact]
    public void Credentials_are_removed_before_a_snippet_is_cut()
    {
        var key = "sk-" + new string('k', 200);
        var snippet = OpenAiTeacher.Snippet($"{new string('x', 100)} {key}", key);
        Assert.DoesNotContain("kkk", snippet, StringComparison.Ordinal);
        Assert.Equal("""{"authorization": "[redacted]", "x-api-key":[redacted]}""", OpenAiTeacher.Snippet("""{"authorization": "Basic dXNlcjpwYXNz", "x-api-key":abc}""", null));
        Assert.Equal("Authorization: [redacted] next", OpenAiTeacher.Snippet("Authorization: Bearer abc.def next", null));
    }

    [Fact]
    public async Task Past_the_max_failure_rate_the_command_ends_as_a_failed_job_with_the_reason()
    {
        using var scratch = new ScratchFolder();
        await using var teacher = new RecordingTeacher(expectedKey: null);
        await teacher.StartAsync();
        // One question of two fails for good: half the calls, above the default 5%.
        var run = await Task.Run(() => Run(Args(scratch, teacher, Dataset(scratch, "What is ECHO?", "What is 2 plus 2?"))));
        AssertOneSentence(3, run, "failed: 1 of 3 teacher calls failed (33.3%), more than --max-failure-rate 0.05; the most frequent reason: HTTP 400 from ");
        Assert.False(File.Exists(scratch.Combine("out/manifest.json")));

        // Following the job instead of waiting for it ends the same way.
        var jobId = System.Text.RegularExpressions.Regex.Match(run.Error, "job (distill-[0-9a-f]{12}) failed").Groups[1].Value;
        var watched = await Task.Run(() => Run("watch", jobId, "--store", scratch.Combine("store")));
        AssertOneSentence(3, watched, "failed: 1 of 3 teacher calls failed (33.3%), more than --max-failure-rate 0.05; the most frequent reason: HTTP 400 from ");
    }
}
