using System.Globalization;
using Babel.Modeling.Checkpoints;
using Microsoft.Extensions.Options;

namespace Babel.Silo.Serving;

/// <summary>
/// What <c>babel serve</c> serves and how much work it accepts, bound from <c>Babel:Serving</c>; the command's flags win.
/// The limits bound what one client can make the server do: a request over a limit is answered 400 (413 for the body,
/// 429 when the queue is full) before any work starts.
/// </summary>
public sealed class ServingOptions
{
    public const string Section = "Babel:Serving";

    /// <summary>The model folder (Hugging Face layout with <c>tokenizer.json</c>); set by <c>--model</c>.</summary>
    public string ModelFolder { get; set; } = "";

    /// <summary>The element type the model is loaded and computed in; set by <c>--dtype</c>. Default auto (<see cref="ModelDtypes.Resolve"/>).</summary>
    public ModelDtype Dtype { get; set; } = ModelDtype.Auto;

    /// <summary>The model name the API answers to; set by <c>--name</c> (default: the folder's name).</summary>
    public string Name { get; set; } = "";

    /// <summary>Rows generated together at most; concurrent requests waiting in the queue are batched up to this. Default 32.</summary>
    public int MaxBatch { get; set; } = 32;

    /// <summary>How long the generation thread waits for more requests to join a batch after the first arrives. Default 5 ms.</summary>
    public TimeSpan BatchWindow { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Environment variable whose value, when set, every <c>/v1</c> request must present as <c>Authorization: Bearer</c>.</summary>
    public string ApiKeyVariable { get; set; } = "BABEL_SERVE_API_KEY";

    /// <summary>Requests waiting for the generation thread at most; one more is answered 429 with <c>Retry-After</c>. Default 64.</summary>
    public int MaxQueuedRequests { get; set; } = 64;

    /// <summary>Completions one request may ask for: prompts × <c>n</c>. Default 32 (one default batch).</summary>
    public int MaxChoicesPerRequest { get; set; } = 32;

    /// <summary>Tokens of one prompt at most (BOS included); a prompt must also leave room for <c>max_tokens</c> in the context. Default 4096.</summary>
    public int MaxPromptTokens { get; set; } = 4096;

    /// <summary>Largest <c>max_tokens</c> a request may ask for. Default 2048.</summary>
    public int MaxCompletionTokens { get; set; } = 2048;

    /// <summary>Bytes of one request body at most; a larger body is answered 413. Default 1 MiB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;
}

/// <summary>Checks <see cref="ServingOptions"/>; each message names the setting, its flag and what to set.</summary>
internal sealed class ServingOptionsValidator : IValidateOptions<ServingOptions>
{
    public ValidateOptionsResult Validate(string? name, ServingOptions options)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ModelFolder))
            failures.Add($"{ServingOptions.Section}:ModelFolder (--model) is empty; set the model folder to serve.");
        if (string.IsNullOrWhiteSpace(options.Name))
            failures.Add($"{ServingOptions.Section}:Name (--name) is empty; set the name clients ask for, e.g. the folder's name.");
        AtLeast(failures, "MaxBatch", "--max-batch", options.MaxBatch, 1);
        AtLeast(failures, "MaxQueuedRequests", "--max-queue", options.MaxQueuedRequests, 1);
        AtLeast(failures, "MaxChoicesPerRequest", "--max-choices", options.MaxChoicesPerRequest, 1);
        // BOS plus at least one prompt token.
        AtLeast(failures, "MaxPromptTokens", "--max-prompt-tokens", options.MaxPromptTokens, 2);
        AtLeast(failures, "MaxCompletionTokens", "--max-completion-tokens", options.MaxCompletionTokens, 1);
        // The smallest useful request body, {"prompt":"x"}, is 14 bytes; below a kilobyte no real request fits.
        AtLeast(failures, "MaxRequestBodyBytes", "--max-body-bytes", options.MaxRequestBodyBytes, 1024);
        if (options.BatchWindow < TimeSpan.Zero || options.BatchWindow > TimeSpan.FromSeconds(1))
            failures.Add($"{ServingOptions.Section}:BatchWindow {options.BatchWindow} is outside 0 to 1 second; set a short wait such as 00:00:00.005.");
        if (string.IsNullOrWhiteSpace(options.ApiKeyVariable))
            failures.Add($"{ServingOptions.Section}:ApiKeyVariable is empty; set the name of the environment variable that holds the key, e.g. BABEL_SERVE_API_KEY.");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void AtLeast(List<string> failures, string key, string flag, long value, long minimum)
    {
        if (value < minimum)
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"{ServingOptions.Section}:{key} ({flag}) is {value}; set {minimum} or more."));
    }
}
