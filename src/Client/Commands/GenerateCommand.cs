using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Client.Jobs;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel generate</c>: continues a prompt with a model folder, with a KV cache.</summary>
internal static class GenerateCommand
{
    private static readonly JsonSerializerOptions _json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>What <c>--format json</c> prints: the prompt ids, only the generated ids, and their text (null without a tokenizer).</summary>
    private sealed record Generation(
        [property: JsonPropertyName("prompt_ids")] int[] PromptIds,
        [property: JsonPropertyName("output_ids")] int[] OutputIds,
        [property: JsonPropertyName("text")] string? Text);

    public static Command Create()
    {
        var model = ModelOption.Create("Model folder (Hugging Face layout).");
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text (needs tokenizer.json in the model folder); BOS is prepended." };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "Prompt as comma-separated token ids, used as given." };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens (0 = off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Sample within the smallest set of tokens whose probability reaches p (1 = off).", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<long>("--seed") { Description = "Sampling seed.", DefaultValueFactory = _ => 0 };
        var dtype = ModelOption.CreateDtype();
        var format = FormatOption.Create("text", FormatOption.Json);
        var command = new Command("generate", "Generate a continuation of a prompt.") { model, prompt, promptIds, maxNew, temperature, topK, topP, seed, dtype, format };
        command.SetAction(parse =>
        {
            var text = parse.GetValue(prompt);
            var ids = parse.GetValue(promptIds);
            if (text is not null && ids is not null) throw new UserInputException("Give either --prompt or --prompt-ids, not both.");
            var options = new SamplingOptions
            {
                MaxNewTokens = parse.GetValue(maxNew),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                Seed = parse.GetValue(seed),
            }.Validate();
            TorchRuntime.Initialize();
            var directory = ModelOption.Folder(parse, model);
            using var loaded = CausalLanguageModel.Load(directory, ModelOption.Dtype(parse, dtype));
            using var tokenizer = File.Exists(Path.Combine(directory, "tokenizer.json")) ? HuggingFaceTokenizer.Load(directory) : null;
            int[] promptTokens;
            if (ids is not null)
            {
                promptTokens = ParseIds(ids);
            }
            else if (string.IsNullOrEmpty(text))
            {
                promptTokens = [loaded.Config.BosTokenId];
            }
            else
            {
                if (tokenizer is null) throw new UserInputException($"{directory} has no tokenizer.json; pass --prompt-ids instead of --prompt.");
                promptTokens = [loaded.Config.BosTokenId, .. tokenizer.Encode(text)];
            }
            var generated = TextGenerator.Generate(loaded, [promptTokens], options, padId: loaded.Config.PadTokenId ?? 0)[0];
            var decoded = tokenizer?.Decode(generated);
            var writer = parse.InvocationConfiguration.Output;
            if (parse.GetValue(format) == FormatOption.Json)
            {
                writer.WriteLine(JsonSerializer.Serialize(new Generation(promptTokens, generated, decoded), _json));
            }
            else
            {
                writer.WriteLine(decoded ?? string.Join(",", generated));
            }
            return 0;
        });
        return command;
    }

    private static int[] ParseIds(string value)
    {
        var parts = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
            {
                throw new UserInputException($"--prompt-ids holds '{parts[i]}', which is not a token id; give comma-separated non-negative integers.");
            }
        }
        return ids;
    }
}
