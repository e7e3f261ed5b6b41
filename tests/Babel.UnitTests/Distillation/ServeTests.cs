using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Babel.Client.Commands;
using Babel.Modeling.Generation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Silo;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary><c>babel serve</c>'s OpenAI-compatible API over real HTTP on 127.0.0.1, and the openai teacher against it.</summary>
public class ServeTests
{
    private static async Task<JsonNode> PostAsync(HttpClient http, string path, JsonObject body)
    {
        using var response = await http.PostAsync(path, new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task The_served_api_answers_like_openai_and_matches_plain_generation()
    {
        using var scratch = new ScratchFolder();
        var (model, _) = JobTestInputs.Write(scratch);
        var url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
        var keyVariable = "BABEL_TEST_SERVE_KEY_" + Guid.NewGuid().ToString("N");
        await using var app = await ServeCommand.StartAsync(model, url, "tiny", 8, scratch.Combine("store"), CancellationToken.None, keyVariable);
        using var http = new HttpClient { BaseAddress = new Uri(url) };

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
        var models = JsonNode.Parse(await http.GetStringAsync("/v1/models"))!;
        Assert.Equal("tiny", (string)models["data"]![0]!["id"]!);

        var completion = await PostAsync(http, "/v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "the cat", ["max_tokens"] = 6, ["temperature"] = 1.0, ["seed"] = 3, ["n"] = 2 });
        var choices = completion["choices"]!.AsArray();
        Assert.Equal(2, choices.Count);
        Assert.Equal("text_completion", (string)completion["object"]!);
        // The same text as plain generation with seed 3 (choice 0) on the same model.
        using (var loaded = CausalLanguageModel.Load(model))
        using (var tokenizer = HuggingFaceTokenizer.Load(model))
        {
            var prompt = (int[])[loaded.Config.BosTokenId, .. tokenizer.Encode("the cat")];
            var ids = TextGenerator.Generate(loaded, [prompt], new SamplingOptions { MaxNewTokens = 6, Temperature = 1.0, Seed = 3 }, padId: loaded.Config.PadTokenId ?? 0)[0];
            Assert.Equal(tokenizer.Decode(ids), (string)choices[0]!["text"]!);
            var usage = completion["usage"]!;
            Assert.Equal(prompt.Length, (long)usage["prompt_tokens"]!);
            Assert.InRange((long)usage["completion_tokens"]!, 2, 12);
            Assert.Equal((long)usage["prompt_tokens"]! + (long)usage["completion_tokens"]!, (long)usage["total_tokens"]!);
        }
        // A seed makes a request reproducible.
        var again = await PostAsync(http, "/v1/completions", new JsonObject { ["prompt"] = "the cat", ["max_tokens"] = 6, ["temperature"] = 1.0, ["seed"] = 3, ["n"] = 2 });
        Assert.Equal(choices.Select(c => (string)c!["text"]!), again["choices"]!.AsArray().Select(c => (string)c!["text"]!));

        var chat = await PostAsync(http, "/v1/chat/completions", new JsonObject
        {
            ["model"] = "tiny", ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "the cat" }), ["max_tokens"] = 6, ["temperature"] = 1.0, ["seed"] = 3,
        });
        Assert.Equal("assistant", (string)chat["choices"]![0]!["message"]!["role"]!);
        Assert.Equal((string)choices[0]!["text"]!, (string)chat["choices"]![0]!["message"]!["content"]!);

        // Concurrent requests are answered each with its own seed's text, whatever they were batched with.
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => PostAsync(http, "/v1/completions",
            new JsonObject { ["prompt"] = "the cat", ["max_tokens"] = 6, ["temperature"] = 1.0, ["seed"] = 3 + (i % 2) })));
        Assert.All(concurrent.Where((_, i) => i % 2 == 0), c => Assert.Equal((string)choices[0]!["text"]!, (string)c["choices"]![0]!["text"]!));
        Assert.All(concurrent.Where((_, i) => i % 2 == 1), c => Assert.Equal((string)choices[1]!["text"]!, (string)c["choices"]![0]!["text"]!));

        // Bad requests are 400/404 with an OpenAI error object.
        var bad = await http.PostAsync("/v1/completions", new StringContent("{not json", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("not valid JSON", (string)JsonNode.Parse(await bad.Content.ReadAsStringAsync())!["error"]!["message"]!, StringComparison.Ordinal);
        var hot = await http.PostAsJsonAsync("/v1/completions", new JsonObject { ["prompt"] = "x", ["temperature"] = 5.0 });
        Assert.Equal(HttpStatusCode.BadRequest, hot.StatusCode);
        var other = await http.PostAsJsonAsync("/v1/completions", new JsonObject { ["model"] = "gpt-9", ["prompt"] = "x" });
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);

        // With the key variable set, /v1 needs the bearer token; health does not.
        Environment.SetEnvironmentVariable(keyVariable, "s3cret");
        try
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
            using var authorized = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
            authorized.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(authorized)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
        }
        finally
        {
            Environment.SetEnvironmentVariable(keyVariable, null);
        }
    }

    [Fact]
    public async Task An_openai_teacher_job_against_the_served_model_completes_and_reruns_from_the_cache()
    {
        using var scratch = new ScratchFolder();
        // Room for the few-shot math prompts: the server refuses a prompt that does not fit the context (the local teacher would cut it).
        var (model, _) = JobTestInputs.Write(scratch, contextLength: 2048);
        var dataset = DistillLocalTeacherTests.WriteMathDataset(scratch, 2);
        var url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
        await using var app = await ServeCommand.StartAsync(model, url, "tiny", 8, scratch.Combine("serve-store"), CancellationToken.None);
        var served = app.Services.GetService(typeof(Babel.Silo.Serving.ServedModel)) as Babel.Silo.Serving.ServedModel;
        string[] Args(string output, params string[] extra) =>
        [
            "distill", "generate", "--teacher", $"openai:{url}/v1", "--teacher-model", "tiny", "--dataset", "jsonl:" + dataset, "--task", "math",
            "--cots", "2", "--evals", "1", "--max-new-tokens", "5", "--seed", "4", "--out", output, "--store", scratch.Combine("store"), .. extra,
        ];
        var (code, output, error) = await Task.Run(() => Run(Args(scratch.Combine("out"))));
        Assert.True(code == 0, error);
        Assert.Contains("4 chains of thought", output, StringComparison.Ordinal);
        var manifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("out/manifest.json")))!;
        Assert.Equal(8, (long)manifest["teacher_calls"]!);
        Assert.Equal("openai", (string)manifest["teacher"]!["kind"]!);
        Assert.True((long)manifest["tokens_in"]! > 0);
        Assert.Equal(4, File.ReadAllLines(scratch.Combine("out/evaluations.jsonl")).Length);
        var rows = served!.Rows;
        Assert.Equal(8, rows);

        (code, _, error) = await Task.Run(() => Run(Args(scratch.Combine("out2"), "--job-id", "distill-http-again")));
        Assert.True(code == 0, error);
        Assert.Equal(rows, served.Rows);
        Assert.Equal(File.ReadAllText(scratch.Combine("out/cots.jsonl")), File.ReadAllText(scratch.Combine("out2/cots.jsonl")));

        // The silo's /metrics exports the distillation instruments of this process.
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"{url}/metrics");
        foreach (var series in new[] { "babel_distill_teacher_requests_total{", "babel_distill_teacher_tokens_in_total", "babel_distill_teacher_latency_seconds_bucket{", "babel_distill_cache_hits_total", "babel_distill_records_total{" })
        {
            Assert.Contains(series, metrics, StringComparison.Ordinal);
        }
    }
}
