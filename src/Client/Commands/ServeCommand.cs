using System.CommandLine;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Silo;
using Babel.Silo.Serving;
using Babel.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel serve</c>: a silo that serves a model folder on an OpenAI-compatible API.</summary>
internal static class ServeCommand
{
    public const string DefaultUrls = "http://127.0.0.1:8000";

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder (Hugging Face layout with tokenizer.json).", Required = true };
        var urls = new Option<string>("--urls") { Description = "Listen URLs; loopback only unless told otherwise.", DefaultValueFactory = _ => DefaultUrls };
        var name = new Option<string?>("--name") { Description = "Model name the API answers to (default: the folder's name)." };
        var maxBatch = new Option<int>("--max-batch") { Description = "Rows generated together at most; concurrent requests are batched up to this.", DefaultValueFactory = _ => 32 };
        var store = new Option<string>("--store") { Description = "Folder for the embedded silo's state and artifacts.", DefaultValueFactory = _ => ".babel" };
        var command = new Command("serve", "Serve a model on OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/models (bearer token required when BABEL_SERVE_API_KEY is set), with /health and /metrics.")
        {
            model, urls, name, maxBatch, store,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var app = await StartAsync(parse.GetValue(model)!, parse.GetValue(urls)!, parse.GetValue(name), parse.GetValue(maxBatch), parse.GetValue(store)!, cancellationToken);
            var served = app.Services.GetRequiredService<ServedModel>();
            parse.InvocationConfiguration.Output.WriteLine($"serving {served.Name} on {string.Join(", ", app.Urls)}/v1 (Ctrl+C stops)");
            await app.WaitForShutdownAsync(cancellationToken);
            return 0;
        });
        return command;
    }

    /// <summary>Starts the silo with the model's API and returns once it listens.</summary>
    public static async Task<WebApplication> StartAsync(string modelFolder, string urls, string? name, int maxBatch, string storeRoot, CancellationToken cancellationToken,
        string apiKeyVariable = "BABEL_SERVE_API_KEY")
    {
        ModelCheckpoint.Validate(modelFolder);
        if (!File.Exists(Path.Combine(modelFolder, "tokenizer.json"))) throw new UserInputException($"{modelFolder} has no tokenizer.json; serving text needs one.");
        if (maxBatch < 1) throw new UserInputException($"--max-batch must be at least 1 (got {maxBatch}).");
        var root = Path.GetFullPath(storeRoot);
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Orleans", LogLevel.Error);
        builder.WebHost.UseUrls(urls);
        builder.Configuration[$"{WorkerOptions.Section}:CpuSlots"] = "0";
        builder.Configuration[$"{WorkerOptions.Section}:CacheFolder"] = Path.Combine(root, "cache");
        builder.AddBabelSilo(o =>
        {
            o.Mode = ClusterMode.Embedded;
            o.StateFolder = Path.Combine(root, "state");
            o.ArtifactFolder = Path.Combine(root, "artifacts");
            o.SiloPort = EngineConnection.FreePort();
            o.GatewayPort = EngineConnection.FreePort();
        });
        builder.AddBabelTelemetry();
        builder.AddBabelServing(new ServingOptions
        {
            ModelFolder = Path.GetFullPath(modelFolder),
            Name = name ?? new DirectoryInfo(Path.GetFullPath(modelFolder)).Name,
            MaxBatch = maxBatch,
            ApiKeyVariable = apiKeyVariable,
        });
        var app = builder.Build();
        app.MapBabelEndpoints();
        app.MapOpenAiEndpoints();
        // Loads the model before the first request.
        app.Services.GetRequiredService<ServedModel>();
        await app.StartAsync(cancellationToken);
        return app;
    }
}
