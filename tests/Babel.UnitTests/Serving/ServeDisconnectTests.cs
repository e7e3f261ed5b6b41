using System.Text.Json.Nodes;
using Babel.Modeling.Generation;
using Babel.Modeling.Transformer;
using Xunit;
using Xunit.Abstractions;

namespace Babel.UnitTests.Serving;

/// <summary>A client that disconnects stops the server's work on its rows at the next decoding step.</summary>
public class ServeDisconnectTests(ITestOutputHelper output)
{
    private const int MaxTokens = 4000;
    private const int Choices = 4;

    private static JsonObject Endless(bool stream) => new()
    {
        ["prompt"] = ServedApi.EndlessPrompt, ["n"] = Choices, ["max_tokens"] = MaxTokens, ["temperature"] = 0, ["stream"] = stream,
    };

    private static Task<ServedApi> StartAsync(ScratchFolder scratch) =>
        ServedApi.StartAsync(scratch, o => o.MaxCompletionTokens = MaxTokens, contextLength: 4096);

    [Fact]
    public void The_endless_prompt_reaches_no_eos_in_greedy_decoding()
    {
        // The premise of the tests below: without a disconnect the server would compute every one of the rows' tokens.
        using var scratch = new ScratchFolder();
        var (folder, _) = Jobs.JobTestInputs.Write(scratch, 4096);
        using var model = CausalLanguageModel.Load(folder);
        using var tokenizer = Babel.Modeling.Tokenization.HuggingFaceTokenizer.Load(folder);
        var prompt = (int[])[model.Config.BosTokenId, .. tokenizer.Encode(ServedApi.EndlessPrompt)];
        var ids = TextGenerator.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = MaxTokens }, padId: 2)[0];
        Assert.Equal(MaxTokens, ids.Length);
        Assert.DoesNotContain(model.Config.EosTokenId, ids);
    }

    [Fact]
    public async Task A_client_that_cancels_a_request_stops_its_generation()
    {
        using var scratch = new ScratchFolder();
        await using var api = await StartAsync(scratch);
        using var leave = new CancellationTokenSource();
        var request = api.Http.PostAsync("/v1/completions", ServedApi.Json(Endless(stream: false)), leave.Token);
        await ServedApi.UntilAsync(() => api.Model.GeneratedTokens > 0, TimeSpan.FromSeconds(30), "generation has started");
        await leave.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        var atDisconnect = api.Model.GeneratedTokens;
        await ServedApi.UntilAsync(() => api.Model.ActiveRows == 0, TimeSpan.FromSeconds(30), "the generation thread is idle");
        var total = api.Model.GeneratedTokens;
        output.WriteLine($"tokens computed: {atDisconnect} when the client left, {total} in all, of {Choices * MaxTokens} asked for");
        Assert.Equal(Choices, api.Model.AbandonedRows);
        Assert.True(total < Choices * MaxTokens, $"{total} tokens computed: generation went on after the client left");
        // The work stopped for good: a new request is the only thing that makes the counter move again.
        var (status, _) = await api.PostAsync("/v1/completions", new JsonObject { ["prompt"] = ServedApi.EndlessPrompt, ["max_tokens"] = 2, ["temperature"] = 0 });
        Assert.Equal(200, status);
        Assert.Equal(total + 2, api.Model.GeneratedTokens);

        // The same counts on /metrics, for an operator.
        var metrics = await api.Http.GetStringAsync("/metrics");
        foreach (var series in new[]
        {
            "babel_serve_rows_abandoned_total", "babel_serve_tokens_generated_total", "babel_serve_tokens_prompt_total",
            "babel_serve_requests_total{otel_scope_name=\"Babel.Serving\",outcome=\"abandoned\"}", "babel_serve_queue_requests",
        })
        {
            Assert.Contains(series, metrics, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_streaming_client_that_disconnects_stops_its_generation()
    {
        using var scratch = new ScratchFolder();
        await using var api = await StartAsync(scratch);
        var response = await api.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = ServedApi.Json(Endless(stream: true)) },
            HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        using (var reader = new StreamReader(stream, leaveOpen: true))
        {
            // Read until the first piece of text: the rows are generating.
            string? text = null;
            while (string.IsNullOrEmpty(text) && await reader.ReadLineAsync() is { } line)
            {
                if (line.StartsWith("data: {", StringComparison.Ordinal)) text = (string?)JsonNode.Parse(line["data: ".Length..])!["choices"]![0]!["text"];
            }
            Assert.False(string.IsNullOrEmpty(text));
        }
        Assert.True(api.Model.GeneratedTokens > 0);
        // Closing the response closes the connection: the client is gone.
        response.Dispose();
        await ServedApi.UntilAsync(() => api.Model.AbandonedRows == Choices && api.Model.ActiveRows == 0, TimeSpan.FromSeconds(30), "the rows were abandoned and the thread is idle");
        var total = api.Model.GeneratedTokens;
        output.WriteLine($"tokens computed: {total} of {Choices * MaxTokens} asked for");
        Assert.True(total < Choices * MaxTokens, $"{total} tokens computed: generation went on after the client left");
    }

    [Fact]
    public async Task A_request_whose_client_left_while_it_waited_is_never_generated()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch, o => o.MaxCompletionTokens = MaxTokens, maxBatch: Choices, contextLength: 4096);
        using var leaveFirst = new CancellationTokenSource();
        using var leaveSecond = new CancellationTokenSource();
        var first = api.Http.PostAsync("/v1/completions", ServedApi.Json(Endless(stream: false)), leaveFirst.Token);
        await ServedApi.UntilAsync(() => api.Model.ActiveRows == Choices, TimeSpan.FromSeconds(30), "the first request is generating");
        var second = api.Http.PostAsync("/v1/completions", ServedApi.Json(Endless(stream: false)), leaveSecond.Token);
        await ServedApi.UntilAsync(() => api.Model.QueuedRequests == 1, TimeSpan.FromSeconds(30), "the second request waits");
        await leaveSecond.CancelAsync();
        await ServedApi.UntilAsync(() => api.Model.QueuedRequests == 0, TimeSpan.FromSeconds(30), "the second request left the queue");
        await leaveFirst.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.WhenAll(first, second));
        await ServedApi.UntilAsync(() => api.Model.ActiveRows == 0, TimeSpan.FromSeconds(30), "the generation thread is idle");
        // Only the first request's rows ever reached the model.
        Assert.Equal(Choices, api.Model.AbandonedRows);
        Assert.Equal(1, api.Model.Batches);
        Assert.Equal(Choices, api.Model.Rows);
    }
}
