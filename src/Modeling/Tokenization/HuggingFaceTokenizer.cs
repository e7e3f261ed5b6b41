using System.Text.Json.Nodes;
using Babel.Storage;
using Tokenizers.DotNet;

namespace Babel.Modeling.Tokenization;

/// <summary>
/// A tokenizer read from a Hugging Face model folder and run by Hugging Face's own Rust library
/// (through Tokenizers.DotNet), so ids match what transformers produces for the same <c>tokenizer.json</c>.
/// Encode and Decode may be called from several threads at once (the native library shares one
/// read-locked tokenizer); do not call <see cref="Dispose"/> while other threads still use it.
/// A literal special-token text in the input (e.g. "&lt;s&gt;") is encoded as that special token, as
/// Hugging Face does, and is then dropped by <see cref="Decode"/>.
/// </summary>
public sealed class HuggingFaceTokenizer : ITokenizer, IDisposable
{
    private const string TokenizerFile = "tokenizer.json";
    private readonly Tokenizer _native;

    private HuggingFaceTokenizer(Tokenizer native, int vocabSize, int bosId, int eosId, int padId)
    {
        _native = native;
        VocabSize = vocabSize;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
    }

    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }

    /// <summary>
    /// Loads <c>tokenizer.json</c> from <paramref name="modelDir"/>. Special tokens come from
    /// <c>tokenizer_config.json</c>, then <c>special_tokens_map.json</c>, then the ids in <c>config.json</c>
    /// (first file that names one wins). EOS is required; BOS and pad fall back to EOS (GPT-2 style).
    /// Any post-processor is dropped so that <see cref="Encode"/> adds no special tokens.
    /// </summary>
    /// <exception cref="UserInputException">The folder, tokenizer.json or a config file is missing or unreadable.</exception>
    public static HuggingFaceTokenizer Load(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        if (!Directory.Exists(modelDir))
            throw new UserInputException($"Model folder '{modelDir}' does not exist; pass a folder that holds {TokenizerFile}.");
        var path = Path.Combine(modelDir, TokenizerFile);
        if (!File.Exists(path))
            throw new UserInputException($"No {TokenizerFile} in '{modelDir}'; copy the model's Hugging Face {TokenizerFile} there or train one.");

        var root = ReadJsonObject(path, required: true)!;
        // Checked here because the native library must never see a file it could choke on.
        if (root["model"] is not JsonObject model || model["vocab"] is null)
            throw new UserInputException($"{TokenizerFile} in '{modelDir}' has no model vocabulary; replace it with an intact Hugging Face {TokenizerFile}.");
        var ids = TokenIds(root, model, path);
        if (ids.Count == 0)
            throw new UserInputException($"{TokenizerFile} in '{modelDir}' has an empty vocabulary; replace it with an intact Hugging Face {TokenizerFile}.");

        var native = CreateNative(path, root);
        var eos = SpecialId("eos", modelDir, ids)
            ?? throw new UserInputException(
                $"'{modelDir}' names no eos token; add \"eos_token\" to tokenizer_config.json or \"eos_token_id\" to config.json.");
        var bos = SpecialId("bos", modelDir, ids) ?? eos;
        var pad = SpecialId("pad", modelDir, ids) ?? eos;
        return new HuggingFaceTokenizer(native, ids.Values.Max() + 1, bos, eos, pad);
    }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return [];
        uint[] ids;
        try
        {
            ids = _native.Encode(text);
        }
        catch (TokenizerException e)
        {
            throw new ArgumentException($"Text could not be tokenized (is it valid UTF-16?): {e.Message}", nameof(text), e);
        }
        return Array.ConvertAll(ids, id => (int)id);
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        if (ids.IsEmpty) return string.Empty;
        var raw = new uint[ids.Length];
        for (var i = 0; i < ids.Length; i++) raw[i] = (uint)ids[i];
        return _native.Decode(raw);
    }

    public void Dispose() => _native.Dispose();

    private static Tokenizer CreateNative(string path, JsonObject root)
    {
        string? copy = null;
        try
        {
            if (root["post_processor"] is not null)
            {
                // The native wrapper always encodes with add_special_tokens=true; without a post-processor that adds nothing.
                root["post_processor"] = null;
                copy = Path.Combine(Path.GetTempPath(), $"babel-tokenizer-{Guid.NewGuid():N}.json");
                File.WriteAllText(copy, root.ToJsonString());
            }
            return new Tokenizer(copy ?? path);
        }
        catch (TokenizerException e)
        {
            throw new UserInputException(
                $"{path} could not be loaded by Hugging Face tokenizers ({e.Message.Trim()}); replace it with an intact {TokenizerFile}.", e);
        }
        finally
        {
            if (copy is not null) File.Delete(copy);
        }
    }

    /// <summary>Every token's id, from the model vocabulary and the added tokens.</summary>
    private static Dictionary<string, int> TokenIds(JsonObject root, JsonObject model, string path)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            switch (model["vocab"])
            {
                case JsonObject vocab: // BPE, WordPiece, WordLevel
                    foreach (var (token, id) in vocab) ids[token] = id!.GetValue<int>();
                    break;
                case JsonArray pieces: // Unigram: [[piece, score], …], id = position
                    for (var i = 0; i < pieces.Count; i++) ids[pieces[i]![0]!.GetValue<string>()] = i;
                    break;
                default:
                    throw new InvalidOperationException("vocab is neither an object nor an array");
            }
            if (root["added_tokens"] is JsonArray added)
                foreach (var token in added)
                    ids[token!["content"]!.GetValue<string>()] = token["id"]!.GetValue<int>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ArgumentException)
        {
            throw new UserInputException($"{path} has a malformed vocabulary ({e.Message}); replace it with an intact {TokenizerFile}.", e);
        }
        return ids;
    }

    /// <summary>Id of the "bos", "eos" or "pad" token as the model folder names it, or null.</summary>
    private static int? SpecialId(string role, string modelDir, Dictionary<string, int> ids)
    {
        foreach (var file in (string[])["tokenizer_config.json", "special_tokens_map.json"])
        {
            var path = Path.Combine(modelDir, file);
            var value = ReadJsonObject(path, required: false)?[$"{role}_token"];
            var content = value switch
            {
                JsonValue v when v.TryGetValue<string>(out var s) => s,
                JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
                _ => null,
            };
            if (content is null) continue;
            if (ids.TryGetValue(content, out var id)) return id;
            throw new UserInputException($"{path} names {role}_token '{content}', which is not in {TokenizerFile}; fix the token or the file.");
        }

        var config = Path.Combine(modelDir, "config.json");
        var idValue = ReadJsonObject(config, required: false)?[$"{role}_token_id"];
        // Some models list several EOS ids (e.g. Llama 3); the first is the canonical one.
        if (idValue is JsonArray list && list.Count > 0) idValue = list[0];
        if (idValue is JsonValue number && number.TryGetValue<int>(out var configured)) return configured;
        return null;
    }

    private static JsonObject? ReadJsonObject(string path, bool required) =>
        !required && !File.Exists(path) ? null : Chat.ConfigFiles.ReadObject(path);
}
