using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Babel.UnitTests.Serving;

/// <summary><c>"stream": true</c>: OpenAI's server-sent events carry exactly the text of the answer without streaming.</summary>
public class ServeStreamingTests
{
    /// <summary>The <c>data:</c> payloads of an event stream, in order, checking OpenAI's framing (one <c>data:</c> line and a blank line per event).</summary>
    private static async Task<List<string>> EventsAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        var events = text.Split("\n\n");
        Assert.Equal("", events[^1]);
        return [.. events[..^1].Select(e =>
        {
            Assert.StartsWith("data: ", e, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e);
            return e["data: ".Length..];
        })];
    }

    /// <summary>Each choice's concatenated deltas and finish reason, after checking the chunks' shape; the usage chunk when there is one.</summary>
    private static (string[] Texts, string[] FinishReasons, JsonNode? Usage) Collect(List<string> events, bool chat, int choices)
    {
        Assert.Equal("[DONE]", events[^1]);
        var texts = new string[choices];
        var finish = new string[choices];
        Array.Fill(texts, "");
        JsonNode? usage = null;
        string? id = null;
        foreach (var chunk in events[..^1].Select(e => JsonNode.Parse(e)!))
        {
            Assert.Equal(chat ? "chat.completion.chunk" : "text_completion", (string)chunk["object"]!);
            Assert.Equal("tiny", (string)chunk["model"]!);
            id ??= (string)chunk["id"]!;
            Assert.Equal(id, (string)chunk["id"]!);
            var array = chunk["choices"]!.AsArray();
            if (array.Count == 0)
            {
                usage = chunk["usage"];
                continue;
            }
            var choice = Assert.Single(array)!;
            var index = (int)choice["index"]!;
            Assert.Null(finish[index]);
            var piece = chat ? (string?)choice["delta"]!["content"] : (string)choice["text"]!;
            texts[index] += piece ?? "";
            if (choice["finish_reason"] is { } reason) finish[index] = (string)reason!;
        }
        Assert.All(finish, Assert.NotNull);
        return (texts, finish, usage);
    }

    [Fact]
    public async Task Streamed_deltas_concatenate_to_the_completion_text_for_completions_and_chat()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch);
        foreach (var chat in new[] { false, true })
        {
            var path = chat ? "/v1/chat/completions" : "/v1/completions";
            foreach (var (temperature, n) in new[] { (0.0, 1), (1.0, 3) })
            {
                JsonObject Body(bool stream)
                {
                    var body = new JsonObject { ["max_tokens"] = 40, ["temperature"] = temperature, ["seed"] = 11, ["n"] = n, ["stream"] = stream };
                    if (chat) body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "the cat" });
                    else body["prompt"] = "the cat";
                    if (stream) body["stream_options"] = new JsonObject { ["include_usage"] = true };
                    return body;
                }
                var (status, plain) = await api.PostAsync(path, Body(stream: false));
                Assert.True(status == 200, plain.ToJsonString());
                using var response = await api.Http.PostAsync(path, ServedApi.Json(Body(stream: true)));
                var events = await EventsAsync(response);
                var (texts, finish, usage) = Collect(events, chat, n);
                Assert.Equal(ServedApi.Texts(plain), texts);
                Assert.Equal(plain["choices"]!.AsArray().Select(c => (string)c!["finish_reason"]!), finish);
                Assert.Equal(plain["usage"]!.ToJsonString(), usage!.ToJsonString());
                // Text arrives in pieces as it is generated, not as one block at the end (greedy decoding of this prompt reaches no EOS).
                if (temperature == 0) Assert.True(events.Count > 10, $"{events.Count} events for 40 tokens");
                if (chat)
                {
                    var first = JsonNode.Parse(events[0])!["choices"]![0]!["delta"]!;
                    Assert.Equal("assistant", (string)first["role"]!);
                }
            }
        }
    }

    [Fact]
    public async Task A_streamed_row_stops_at_a_stop_string_and_never_sends_text_past_it()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch);
        var body = new JsonObject { ["prompt"] = "the cat", ["max_tokens"] = 40, ["temperature"] = 0 };
        var (_, full) = await api.PostAsync("/v1/completions", body);
        var text = ServedApi.Texts(full)[0];
        // A two-letter stop string from the middle of the greedy text, at its first occurrence.
        var at = Enumerable.Range(8, text.Length - 10).First(i => char.IsAsciiLetter(text[i]) && char.IsAsciiLetter(text[i + 1]));
        var stop = text.Substring(at, 2);
        var expected = text[..text.IndexOf(stop, StringComparison.Ordinal)];

        body["stop"] = new JsonArray(stop, "\u0001never");
        var (_, stopped) = await api.PostAsync("/v1/completions", body);
        Assert.Equal(expected, ServedApi.Texts(stopped)[0]);
        Assert.Equal("stop", (string)stopped["choices"]![0]!["finish_reason"]!);
        // Generation ended at the stop string, not at max_tokens.
        Assert.True((long)stopped["usage"]!["completion_tokens"]! < 40);

        body["stream"] = true;
        using var response = await api.Http.PostAsync("/v1/completions", ServedApi.Json(body));
        var (texts, finish, _) = Collect(await EventsAsync(response), chat: false, choices: 1);
        Assert.Equal(expected, texts[0]);
        Assert.Equal("stop", finish[0]);
    }

    [Fact]
    public async Task A_bad_streaming_request_is_answered_with_a_json_error_not_a_stream()
    {
        using var scratch = new ScratchFolder();
        await using var api = await ServedApi.StartAsync(scratch);
        using var response = await api.Http.PostAsync("/v1/chat/completions", ServedApi.Json(new JsonObject { ["messages"] = 5, ["stream"] = true }));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var message = (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["message"]!;
        Assert.StartsWith("'messages' must be a non-empty array", message, StringComparison.Ordinal);
    }
}
