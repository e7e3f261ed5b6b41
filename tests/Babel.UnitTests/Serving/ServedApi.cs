using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Babel.Client.Commands;
using Babel.Silo;
using Babel.Silo.Serving;
using Babel.UnitTests.Jobs;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Babel.UnitTests.Serving;

/// <summary><c>babel serve</c> on 127.0.0.1 with the tiny random test model, and a client for it.</summary>
internal sealed class ServedApi : IAsyncDisposable
{
    /// <summary>
    /// A prompt on which the tiny test model's greedy decoding never reaches EOS within 4,000 tokens (checked by
    /// <see cref="ServeDisconnectTests"/>), so a greedy request with a large max_tokens keeps the generation thread busy.
    /// </summary>
    public const string EndlessPrompt = "the cat";

    private readonly WebApplication _app;

    private ServedApi(WebApplication app, string modelFolder, string url)
    {
        _app = app;
        ModelFolder = modelFolder;
        Url = url;
        Model = app.Services.GetRequiredService<ServedModel>();
        // No draining: a response disposed unread closes its connection at once, as a client that goes away does
        // (by default HttpClient would keep reading up to 1 MB to reuse the connection).
        Http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
    }

    public string ModelFolder { get; }
    public string Url { get; }
    public ServedModel Model { get; }
    public HttpClient Http { get; }

    /// <summary>Serves a fresh tiny model; <paramref name="prepareModel"/> may change its folder first (e.g. add a chat template).</summary>
    public static async Task<ServedApi> StartAsync(ScratchFolder scratch, Action<ServingOptions>? configure = null, int maxBatch = 8, int contextLength = 128,
        string apiKeyVariable = "BABEL_SERVE_API_KEY", Action<string>? prepareModel = null)
    {
        var (model, _) = JobTestInputs.Write(scratch, contextLength);
        prepareModel?.Invoke(model);
        var url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
        var app = await ServeCommand.StartAsync(model, url, "tiny", maxBatch, scratch.Combine("store"), CancellationToken.None, apiKeyVariable, configure);
        return new ServedApi(app, model, url);
    }

    public static StringContent Json(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    public static ByteArrayContent Raw(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    /// <summary>POSTs <paramref name="body"/> and returns the status with the parsed JSON answer.</summary>
    public async Task<(int Status, JsonNode Body)> PostAsync(string path, JsonObject body) => await SendAsync(path, Json(body));

    public async Task<(int Status, JsonNode Body)> SendAsync(string path, HttpContent content)
    {
        using var response = await Http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonNode.Parse(text)!);
    }

    /// <summary>The texts of a non-streamed answer's choices, in order.</summary>
    public static List<string> Texts(JsonNode completion) => [.. completion["choices"]!.AsArray().Select(c => (string)(c!["text"] ?? c["message"]!["content"])!)];

    /// <summary>Waits until <paramref name="condition"/> holds, checking every few milliseconds, failing after <paramref name="timeout"/>.</summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!condition())
        {
            if (deadline.IsCancellationRequested) Assert.Fail($"Timed out after {timeout.TotalSeconds} s waiting until {what}.");
            await Task.Delay(10, CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.DisposeAsync();
    }
}
