using Babel.Modeling.Tokenization;

namespace Babel.Modeling.Training;

/// <summary>Documents tokenised as [BOS] text [EOS] and concatenated; training windows are cut from anywhere in it.</summary>
public sealed class TokenStream
{
    public TokenStream(long[] tokens) => Tokens = tokens;

    public long[] Tokens { get; }
    public long Length => Tokens.LongLength;

    public static TokenStream FromDocuments(ITokenizer tokenizer, IEnumerable<string> documents)
    {
        var tokens = new List<long>();
        foreach (var text in documents)
        {
            tokens.Add(tokenizer.BosId);
            foreach (var id in tokenizer.Encode(text)) tokens.Add(id);
            tokens.Add(tokenizer.EosId);
        }
        return new TokenStream([.. tokens]);
    }

    /// <summary>
    /// The start offsets of the windows of <paramref name="step"/>: a pure function of (seed, step), so a resumed
    /// run sees exactly the batches an uninterrupted one would.
    /// </summary>
    public long[] WindowStarts(long seed, int step, int batchSize, int windowLength)
    {
        var room = Length - windowLength;
        if (room <= 0) throw new Storage.UserInputException($"The training text has {Length} tokens, fewer than one window of {windowLength + 1}; use a larger corpus or a shorter sequence length.");
        // HashCode is randomised per process; the seed must give the same windows in every process.
        var random = new Random(unchecked((int)SplitMix64((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step)));
        return [.. Enumerable.Range(0, batchSize).Select(_ => random.NextInt64(room))];
    }

    /// <summary>SplitMix64's finaliser: a fixed, well-mixed function of its input.</summary>
    internal static ulong SplitMix64(ulong x)
    {
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
