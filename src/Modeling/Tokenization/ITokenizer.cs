namespace Babel.Modeling.Tokenization;

/// <summary>
/// The project's one tokenizer contract: text to token ids and back.
/// Load one from a Hugging Face model folder with <see cref="HuggingFaceTokenizer.Load"/>.
/// </summary>
public interface ITokenizer
{
    /// <summary>Number of ids the tokenizer can produce: the highest id in its vocabulary or added tokens, plus one.</summary>
    int VocabSize { get; }

    /// <summary>Id of the beginning-of-sequence token; callers prepend it, <see cref="Encode"/> never does.</summary>
    int BosId { get; }

    /// <summary>Id of the end-of-sequence token.</summary>
    int EosId { get; }

    /// <summary>Id used to pad batches; equals <see cref="EosId"/> when the model folder names no pad token.</summary>
    int PadId { get; }

    /// <summary>Encodes <paramref name="text"/> without adding any special token.</summary>
    int[] Encode(string text);

    /// <summary>Decodes <paramref name="ids"/> to text, skipping special tokens (BOS, EOS, pad).</summary>
    string Decode(ReadOnlySpan<int> ids);
}
