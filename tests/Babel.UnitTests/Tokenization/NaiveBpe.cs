using System.Text;
using System.Text.RegularExpressions;

namespace Babel.UnitTests.Tokenization;

/// <summary>
/// Plain, slow reference for byte-level BPE: the GPT-2 regex from .NET, every pair recounted from scratch
/// after every merge, and encoding by repeatedly applying the lowest-ranked merge. Independent of the trainer.
/// </summary>
internal static partial class NaiveBpe
{
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex Gpt2Pattern();

    public static List<string> PreTokenize(string text) => Gpt2Pattern().Matches(text).Select(m => m.Value).ToList();

    public static string[] ByteSymbols(string piece)
    {
        var map = ByteToChar();
        return Encoding.UTF8.GetBytes(piece).Select(b => map[b].ToString()).ToArray();
    }

    public static char[] ByteToChar()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var cs = bs.ToList();
        var n = 0;
        for (var b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n++); }
        var map = new char[256];
        for (var i = 0; i < bs.Count; i++) map[bs[i]] = (char)cs[i];
        return map;
    }

    /// <summary>Merges learned until <paramref name="symbolTarget"/> distinct symbols (bytes included) exist.</summary>
    public static List<(string, string)> Train(IEnumerable<string> texts, int symbolTarget, int minFrequency)
    {
        var frequencies = new Dictionary<string, long>();
        foreach (var text in texts)
            foreach (var piece in PreTokenize(text))
                frequencies[piece] = frequencies.GetValueOrDefault(piece) + 1;
        var words = frequencies.Select(p => (Symbols: ByteSymbols(p.Key).ToList(), Count: p.Value)).ToList();
        var vocab = new HashSet<string>(ByteToChar().Select(c => c.ToString()));
        var merges = new List<(string, string)>();
        while (vocab.Count < symbolTarget)
        {
            var counts = new Dictionary<(string, string), long>();
            foreach (var (symbols, count) in words)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    counts[(symbols[i], symbols[i + 1])] = counts.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (counts.Count == 0) break;
            var best = counts
                .OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal)
                .ThenBy(p => p.Key.Item2, StringComparer.Ordinal)
                .First();
            if (best.Value < minFrequency) break;
            var (left, right) = best.Key;
            merges.Add((left, right));
            vocab.Add(left + right);
            foreach (var (symbols, _) in words)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = left + right;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return merges;
    }

    /// <summary>Token spellings of <paramref name="text"/>: per pre-token, apply the lowest-ranked merge until none applies.</summary>
    public static List<string> Encode(string text, IReadOnlyList<(string Left, string Right)> merges, Func<string, List<string>>? preTokenize = null)
    {
        preTokenize ??= PreTokenize;
        var rank = new Dictionary<(string, string), int>();
        for (var i = 0; i < merges.Count; i++) rank.TryAdd(merges[i], i);
        var tokens = new List<string>();
        foreach (var piece in preTokenize(text))
        {
            var symbols = ByteSymbols(piece).ToList();
            while (true)
            {
                var bestAt = -1;
                var bestRank = int.MaxValue;
                for (var i = 0; i + 1 < symbols.Count; i++)
                    if (rank.TryGetValue((symbols[i], symbols[i + 1]), out var r) && r < bestRank) { bestRank = r; bestAt = i; }
                if (bestAt < 0) break;
                symbols[bestAt] += symbols[bestAt + 1];
                symbols.RemoveAt(bestAt + 1);
            }
            tokens.AddRange(symbols);
        }
        return tokens;
    }
}
