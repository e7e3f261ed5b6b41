using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Babel.Storage;

namespace Babel.Modeling.Tokenization;

/// <summary>
/// A trained byte-level BPE tokenizer: special tokens, then the 256 byte tokens, then learned tokens,
/// all spelled in GPT-2's byte-level alphabet, plus the merges in the order they were learned.
/// </summary>
public sealed class ByteLevelBpeModel
{
    private static readonly JsonWriterOptions _jsonOptions = new()
    {
        Indented = true,
        // Keeps byte-level spellings ("Ġ", "à¤") readable instead of \u escapes; still valid JSON.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly IReadOnlyList<string> _symbols;
    private readonly IReadOnlyList<(int Left, int Right)> _symbolMerges;

    internal ByteLevelBpeModel(IReadOnlyList<string> specialTokens, IReadOnlyList<string> symbols, IReadOnlyList<(int Left, int Right)> merges)
    {
        SpecialTokens = specialTokens;
        _symbols = symbols;
        _symbolMerges = merges;
        Merges = merges.Select(m => (symbols[m.Left], symbols[m.Right])).ToArray();
    }

    /// <summary>Special tokens; the token at index i has id i.</summary>
    public IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>Number of ids: special tokens, byte tokens and learned tokens.</summary>
    public int VocabSize => SpecialTokens.Count + _symbols.Count;

    /// <summary>Merges in rank order, spelled in the byte-level alphabet.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    /// <summary>Byte-level spelling of token <paramref name="id"/>.</summary>
    public string TokenOf(int id) => id < SpecialTokens.Count ? SpecialTokens[id] : _symbols[id - SpecialTokens.Count];

    /// <summary>
    /// Writes <c>tokenizer.json</c>, <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> into
    /// <paramref name="modelDir"/>, each atomically; tokenizer.json goes last so its presence means a complete set.
    /// </summary>
    public void Save(string modelDir)
    {
        Directory.CreateDirectory(modelDir);
        AtomicFile.WriteAllText(Path.Combine(modelDir, "special_tokens_map.json"), SpecialTokensMapJson());
        AtomicFile.WriteAllText(Path.Combine(modelDir, "tokenizer_config.json"), TokenizerConfigJson());
        AtomicFile.WriteAllText(Path.Combine(modelDir, "tokenizer.json"), TokenizerJson());
    }

    /// <summary>The Hugging Face <c>tokenizer.json</c> text: BPE model, ByteLevel pre-tokenizer and decoder.</summary>
    public string TokenizerJson() => Write(json =>
    {
        json.WriteStartObject();
        json.WriteString("version", "1.0");
        json.WriteNull("truncation");
        json.WriteNull("padding");
        json.WriteStartArray("added_tokens");
        for (var id = 0; id < SpecialTokens.Count; id++)
        {
            json.WriteStartObject();
            json.WriteNumber("id", id);
            json.WriteString("content", SpecialTokens[id]);
            json.WriteBoolean("single_word", false);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("special", true);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteNull("normalizer");
        json.WriteStartObject("pre_tokenizer");
        WriteByteLevel(json, addPrefixSpace: false);
        json.WriteEndObject();
        // No post-processor: nothing is added on encode; callers prepend BOS themselves.
        json.WriteNull("post_processor");
        json.WriteStartObject("decoder");
        WriteByteLevel(json, addPrefixSpace: false);
        json.WriteEndObject();
        json.WriteStartObject("model");
        json.WriteString("type", "BPE");
        json.WriteNull("dropout");
        json.WriteNull("unk_token");
        json.WriteNull("continuing_subword_prefix");
        json.WriteNull("end_of_word_suffix");
        json.WriteBoolean("fuse_unk", false);
        json.WriteBoolean("byte_fallback", false);
        json.WriteBoolean("ignore_merges", false);
        json.WriteStartObject("vocab");
        for (var id = 0; id < VocabSize; id++) json.WriteNumber(TokenOf(id), id);
        json.WriteEndObject();
        json.WriteStartArray("merges");
        foreach (var (left, right) in _symbolMerges)
        {
            json.WriteStartArray();
            json.WriteStringValue(_symbols[left]);
            json.WriteStringValue(_symbols[right]);
            json.WriteEndArray();
        }
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
    });

    private string TokenizerConfigJson() => Write(json =>
    {
        json.WriteStartObject();
        json.WriteBoolean("add_bos_token", false);
        json.WriteBoolean("add_eos_token", false);
        json.WriteBoolean("add_prefix_space", false);
        json.WriteString("bos_token", SpecialTokens[0]);
        json.WriteString("eos_token", SpecialTokens[1]);
        json.WriteString("pad_token", SpecialTokens[2]);
        json.WriteBoolean("clean_up_tokenization_spaces", false);
        json.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        json.WriteEndObject();
    });

    private string SpecialTokensMapJson() => Write(json =>
    {
        json.WriteStartObject();
        json.WriteString("bos_token", SpecialTokens[0]);
        json.WriteString("eos_token", SpecialTokens[1]);
        json.WriteString("pad_token", SpecialTokens[2]);
        json.WriteEndObject();
    });

    private static void WriteByteLevel(Utf8JsonWriter json, bool addPrefixSpace)
    {
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", addPrefixSpace);
        json.WriteBoolean("trim_offsets", true);
        json.WriteBoolean("use_regex", true);
    }

    private static string Write(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, _jsonOptions)) write(json);
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }
}
