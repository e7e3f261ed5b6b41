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
using Microsoft.Extensions.Options;

namespace Babel.Client.Commands;

/// <summary><c>babel serve</c>: a silo that serves a model folder on an OpenAI-compatible API.</summary>
internal static class ServeCommand
{
    public const string DefaultUrls = "http://127.0.0.1:8000";

    public static Command Create()
    {
        var defaults = new ServingOptions();
        var model = ModelOption.Create("Model folder (Hugging Face layout with tokenizer.json).");
        var urls = new Option<string>("--urls") { Description = "Listen URLs; loopback only unless told otherwise.", DefaultValueFactory = _ => DefaultUrls };
        var name = new Option<string?>("--name") { Description = "Model name the API answers to (default: the folder's name, or the org/name given to --model)." };
        // Nullable so that an unset flag leaves Babel:Serving's configured value (or the default) alone.
        var maxBatch = new Option<int?>("--max-batch") { Description = $"Rows generated together at most; concurrent requests are batched up to this (default {defaults.MaxBatch})." };
        var maxQueue = new Option<int?>("--max-queue") { Description = $"Requests waiting to be generated at most; beyond it 429 with Retry-After (default {defaults.MaxQueuedRequests})." };
        var maxChoices = new Option<int?>("--max-choices") { Description = $"Completions one request may ask for, prompts × n, else 400 (default {defaults.MaxChoicesPerRequest})." };
        var maxPromptTokens = new Option<int?>("--max-prompt-tokens") { Description = $"Tokens of one prompt at most, else 400 (default {defaults.MaxPromptTokens}); prompt + max_tokens must also fit the model's context." };
        var maxCompletionTokens = new Option<int?>("--max-completion-tokens") { Description = $"Largest max_tokens a request may ask for, else 400 (default {defaults.MaxCompletionTokens})." };
        var maxBodyBytes = new Option<long?>("--max-body-bytes") { Description = $"Bytes of one request body at most, else 413 (default {defaults.MaxRequestBodyBytes})." };
        var dtype = ModelOption.CreateDtype();
        var store = new Option<string>("--store") { Description = "Folder for the embedded silo's state and artifacts.", DefaultValueFactory = _ => ".babel" };
        var command = new Command("serve", "Serve a model on OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/models (streaming with \"stream\": true; bearer token required when BABEL_SERVE_API_KEY is set), with /health and /metrics.")
        {
            model, urls, name, maxBatch, maxQueue, maxChoices, maxPromptTokens, maxCompletionTokens, maxBodyBytes, dtype, store,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            void Limits(ServingOptions options)
            {
                options.Dtype = ModelOption.Dtype(parse, dtype);
                if (parse.GetValue(maxQueue) is { } queue) options.MaxQueuedRequests = queue;
                if (parse.GetValue(maxChoices) is { } choices) options.MaxChoicesPerRequest = choices;
                if (parse.GetValue(maxPromptTokens) is { } promptTokens) options.MaxPromptTokens = promptTokens;
                if (parse.GetValue(maxCompletionTokens) is { } completionTokens) options.MaxCompletionTokens = completionTokens;
                if (parse.GetValue(maxBodyBytes) is { } bodyBytes) options.MaxRequestBodyBytes = bodyBytes;
            }
            var folder = ModelOption.Folder(parse, model);
            // A model from the hub cache answers to its id, as vLLM's does; a folder to its name.
            var served = parse.GetValue(name) ?? (folder == parse.GetValue(model) ? null : parse.GetValue(model));
            await using var app = await StartAsync(folder, parse.GetValue(urls)!, served, parse.GetValue(maxBatch), parse.GetValue(store)!, cancellationToken,
                configure: Limits);
            parse.InvocationConfiguration.Output.WriteLine($"serving {app.Services.GetRequiredService<ServedModel>().Name} on {string.Join(", ", app.Urls)}/v1 (Ctrl+C stops)");
            await app.WaitForShutdownAsync(cancellationToken);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Starts the silo with the model's API and returns once it listens. <paramref name="configure"/> sets further
    /// <see cref="ServingOptions"/> (the limits) over <c>Babel:Serving</c>; a bad value is a <see cref="UserInputException"/>.
    /// </summary>
    public static async Task<WebApplication> StartAsync(string modelFolder, string urls, string? name, int? maxBatch, string storeRoot, CancellationToken cancellationToken,
        string apiKeyVariable = "BABEL_SERVE_API_KEY", Action<ServingOptions>? configure = null)
    {
        ModelCheckpoint.Validate(modelFolder);
        if (!File.Exists(Path.Combine(modelFolder, "tokenizer.json"))) throw new UserInputException($"{modelFolder} has no tokenizer.json; serving text needs one.");
        var root = Path.GetFullPath(storeRoot);
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [HostArguments.NoConfigurationReload] });
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
            o.SiloPort = LoopbackPorts.Free();
            o.GatewayPort = LoopbackPorts.Free();
        });
        builder.AddBabelTelemetry();
        try
        {
            builder.AddBabelServing(o =>
            {
                o.ModelFolder = Path.GetFullPath(modelFolder);
                o.Name = name ?? new DirectoryInfo(Path.GetFullPath(modelFolder)).Name;
                if (maxBatch is { } batch) o.MaxBatch = batch;
                o.ApiKeyVariable = apiKeyVariable;
                configure?.Invoke(o);
            });
        }
        catch (OptionsValidationException e)
        {
            throw new UserInputException(string.Join(" ", e.Failures));
        }
        var app = builder.Build();
        app.MapBabelEndpoints();
        app.MapOpenAiEndpoints();
        // Loads the model before the first request.
        app.Services.GetRequiredService<ServedModel>();
        await app.StartAsync(cancellationToken);
        return app;
    }
}
