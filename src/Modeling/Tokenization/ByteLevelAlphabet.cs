namespace Babel.Modeling.Tokenization;

/// <summary>
/// GPT-2's bytes_to_unicode table: every byte maps to a printable character so that byte-level
/// tokens can be written as JSON strings in tokenizer.json.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] _byteToChar = BuildTable();

    /// <summary>The character standing for <paramref name="value"/> in vocab and merges.</summary>
    public static char CharOf(byte value) => _byteToChar[value];

    /// <summary>Writes the byte-level spelling of <paramref name="bytes"/>.</summary>
    public static string Spell(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (chars, source) =>
        {
            for (var i = 0; i < source.Length; i++) chars[i] = _byteToChar[source[i]];
        });
    }

    private static char[] BuildTable()
    {
        var table = new char[256];
        var printable = new bool[256];
        // Printable Latin-1 bytes keep their own code point, as in GPT-2.
        for (var b = '!'; b <= '~'; b++) printable[b] = true;
        for (var b = '¡'; b <= '¬'; b++) printable[b] = true;
        for (var b = '®'; b <= 'ÿ'; b++) printable[b] = true;
        var next = 0;
        for (var b = 0; b < 256; b++)
            table[b] = printable[b] ? (char)b : (char)(256 + next++);
        return table;
    }
}
