using System.Text;

namespace Babel.Modeling.Tokenization;

/// <summary>
/// Splits text exactly as Hugging Face's ByteLevel pre-tokenizer (add_prefix_space false) does with
/// the GPT-2 pattern <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>.
/// Written by hand over runes rather than with .NET Regex, whose \p{L} does not see letters outside
/// the Basic Multilingual Plane (surrogate pairs) the way Oniguruma does.
/// </summary>
internal static class ByteLevelPreTokenizer
{
    private enum Kind { Space, Letter, Number, Other }

    /// <summary>Length in UTF-16 units of the piece that starts at <paramref name="start"/>.</summary>
    public static int NextPieceLength(ReadOnlySpan<char> text, int start)
    {
        var c = text[start];
        if (c == '\'' && start + 1 < text.Length)
        {
            var n = text[start + 1];
            if (n is 's' or 't' or 'm' or 'd') return 2;
            if (start + 2 < text.Length)
            {
                var pair = text.Slice(start + 1, 2);
                if (pair is "re" or "ve" or "ll") return 3;
            }
        }

        var (kind, _) = Classify(text, start);
        if (c == ' ' && start + 1 < text.Length)
        {
            var (after, _) = Classify(text, start + 1);
            if (after != Kind.Space) return 1 + RunLength(text, start + 1, after);
        }
        if (kind != Kind.Space) return RunLength(text, start, kind);

        // Whitespace: \s+(?!\S) leaves the last space to lead the next word; a lone space falls to \s+.
        var length = RunLength(text, start, Kind.Space);
        if (start + length == text.Length || length == 1) return length;
        return length - 1;
    }

    /// <summary>Calls <paramref name="piece"/> with each pre-token of <paramref name="text"/>, in order.</summary>
    public static void Split(ReadOnlySpan<char> text, SpanAction piece)
    {
        var start = 0;
        while (start < text.Length)
        {
            var length = NextPieceLength(text, start);
            piece(text.Slice(start, length));
            start += length;
        }
    }

    public delegate void SpanAction(ReadOnlySpan<char> piece);

    /// <summary>The pre-tokens of <paramref name="text"/> as strings (tests and diagnostics).</summary>
    public static List<string> Split(string text)
    {
        var pieces = new List<string>();
        Split(text, p => pieces.Add(p.ToString()));
        return pieces;
    }

    private static int RunLength(ReadOnlySpan<char> text, int start, Kind kind)
    {
        var i = start;
        while (i < text.Length)
        {
            var (k, width) = Classify(text, i);
            if (k != kind) break;
            i += width;
        }
        return i - start;
    }

    private static (Kind Kind, int Width) Classify(ReadOnlySpan<char> text, int index)
    {
        // A lone surrogate is neither letter, number nor space; Hugging Face rejects such text anyway.
        if (Rune.DecodeFromUtf16(text[index..], out var rune, out var width) != System.Buffers.OperationStatus.Done)
            return (Kind.Other, 1);
        if (Rune.IsWhiteSpace(rune)) return (Kind.Space, width);
        if (Rune.IsLetter(rune)) return (Kind.Letter, width);
        if (Rune.IsNumber(rune)) return (Kind.Number, width);
        return (Kind.Other, width);
    }
}
