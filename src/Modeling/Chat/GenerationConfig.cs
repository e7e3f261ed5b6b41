using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Chat;

/// <summary>
/// What Babel reads from a model folder's <c>generation_config.json</c>: the token ids that end a generation
/// (instruction-tuned models often have several, e.g. Llama 3's <c>&lt;|eot_id|&gt;</c> and <c>&lt;|eom_id|&gt;</c>).
/// </summary>
/// <param name="EosTokenIds"><c>eos_token_id</c>, a single id or a list; empty when the file names none.</param>
/// <param name="BosTokenId"><c>bos_token_id</c>, when given.</param>
/// <param name="PadTokenId"><c>pad_token_id</c>, when given.</param>
public sealed record GenerationConfig(IReadOnlyList<int> EosTokenIds, int? BosTokenId, int? PadTokenId)
{
    public const string FileName = "generation_config.json";

    /// <summary>Reads <c>generation_config.json</c> from <paramref name="modelFolder"/>; null when the folder has none.</summary>
    /// <exception cref="UserInputException">The file is not a JSON object, or an id is not a non-negative integer.</exception>
    public static GenerationConfig? Load(string modelFolder)
    {
        var path = Path.Combine(modelFolder, FileName);
        return File.Exists(path) ? FromJson(ConfigFiles.ReadObject(path), path) : null;
    }

    /// <summary>The fields of a parsed <c>generation_config.json</c>; <paramref name="source"/> names it in errors.</summary>
    public static GenerationConfig FromJson(JsonObject json, string source)
    {
        int? Optional(string key) => json[key] is null ? null : Id(json[key], key, source);
        return new GenerationConfig(EosTokenIdsOf(json, source), Optional("bos_token_id"), Optional("pad_token_id"));
    }

    /// <summary>
    /// The <c>eos_token_id</c> of a parsed <c>generation_config.json</c> or <c>config.json</c> (both use the key): a single
    /// id or a list; empty when absent. <paramref name="source"/> names the file in errors.
    /// </summary>
    public static IReadOnlyList<int> EosTokenIdsOf(JsonObject json, string source) => json["eos_token_id"] switch
    {
        null => [],
        JsonArray list => [.. list.Select(item => Id(item, "eos_token_id", source)).Distinct()],
        var single => [Id(single, "eos_token_id", source)],
    };

    private static int Id(JsonNode? node, string key, string source) => node is JsonValue value && value.TryGetValue<int>(out var id) && id >= 0
        ? id
        : throw new UserInputException($"{source}: \"{key}\" must be a non-negative integer id or a list of them; fix the file.");
}
