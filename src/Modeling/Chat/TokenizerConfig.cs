using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Chat;

/// <summary>
/// What Babel reads from a model folder's <c>tokenizer_config.json</c> (Hugging Face transformers' tokenizer settings):
/// the chat template, and the special tokens a template may print.
/// </summary>
/// <param name="ChatTemplate">
/// <c>chat_template</c> as a single template; when the file holds a list of named templates, the one named
/// <c>default</c> (null when the list has none).
/// </param>
/// <param name="NamedChatTemplates">Every template of a <c>chat_template</c> list by name (e.g. <c>default</c>, <c>tool_use</c>); empty for a single template.</param>
/// <param name="BosToken"><c>bos_token</c>, as text (a string, or the <c>content</c> of an AddedToken object).</param>
/// <param name="EosToken"><c>eos_token</c>.</param>
/// <param name="UnkToken"><c>unk_token</c>.</param>
/// <param name="PadToken"><c>pad_token</c>.</param>
public sealed record TokenizerConfig(
    string? ChatTemplate,
    IReadOnlyDictionary<string, string> NamedChatTemplates,
    string? BosToken,
    string? EosToken,
    string? UnkToken,
    string? PadToken)
{
    public const string FileName = "tokenizer_config.json";

    /// <summary>Reads <c>tokenizer_config.json</c> from <paramref name="modelFolder"/>; null when the folder has none.</summary>
    /// <exception cref="UserInputException">The file is not a JSON object, or a field Babel reads has the wrong type.</exception>
    public static TokenizerConfig? Load(string modelFolder)
    {
        var path = Path.Combine(modelFolder, FileName);
        return File.Exists(path) ? FromJson(ConfigFiles.ReadObject(path), path) : null;
    }

    /// <summary>The fields of a parsed <c>tokenizer_config.json</c>; <paramref name="source"/> names it in errors.</summary>
    public static TokenizerConfig FromJson(JsonObject json, string source)
    {
        string? template = null;
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        switch (json["chat_template"])
        {
            case null:
                break;
            case JsonValue value when value.TryGetValue<string>(out var text):
                template = text;
                break;
            case JsonArray list:
                foreach (var entry in list)
                {
                    if (entry is not JsonObject item || item["name"] is not JsonValue name || !name.TryGetValue<string>(out var templateName)
                        || item["template"] is not JsonValue body || !body.TryGetValue<string>(out var templateText))
                    {
                        throw new UserInputException(
                            $"{source}: every entry of the \"chat_template\" list must be an object with string \"name\" and \"template\"; fix the file.");
                    }
                    named[templateName] = templateText;
                }
                template = named.GetValueOrDefault("default");
                break;
            default:
                throw new UserInputException($"{source}: \"chat_template\" must be a string or a list of named templates; fix the file.");
        }
        return new TokenizerConfig(template, named, Token(json, "bos_token", source), Token(json, "eos_token", source),
            Token(json, "unk_token", source), Token(json, "pad_token", source));
    }

    private static string? Token(JsonObject json, string key, string source) => json[key] switch
    {
        null => null,
        JsonValue value when value.TryGetValue<string>(out var text) => text,
        JsonObject added when added["content"] is JsonValue content && content.TryGetValue<string>(out var text) => text,
        _ => throw new UserInputException($"{source}: \"{key}\" must be a string or an object with a string \"content\"; fix the file."),
    };
}
