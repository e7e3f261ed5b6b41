using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Corpora;

/// <summary>The stored token-stream format: exact round trips of any range, and a clear error for every kind of damage.</summary>
public class TokenStreamTests
{
    private const string Key = "tokens/t.tokens";

    /// <summary>Documents of 1 + i tokens each (a BOS of 0, then i + 1, i + 2, …), written with small blocks so ranges cross blocks.</summary>
    private static (byte[] Bytes, long[] Tokens) Write(int documents, int blockTokens)
    {
        var expected = new List<long>();
        using var file = new MemoryStream();
        var writer = new TokenStream.Writer(file, blockTokens);
        for (var document = 0; document < documents; document++)
        {
            writer.BeginDocument();
            writer.Add(0);
            expected.Add(0);
            for (var i = 1; i <= document; i++)
            {
                writer.Add(document * 1000 + i);
                expected.Add(document * 1000 + i);
            }
        }
        writer.Complete();
        Assert.Equal(expected.Count, writer.Tokens);
        Assert.Equal(documents, writer.Documents);
        return (file.ToArray(), [.. expected]);
    }

    private static async Task<LocalFolderArtifactStore> StoreWithAsync(ScratchFolder scratch, byte[] bytes)
    {
        var store = new LocalFolderArtifactStore(scratch.Combine("store"));
        await store.PutBytesAsync(Key, bytes);
        return store;
    }

    [Fact]
    public async Task Every_range_reads_back_exactly_what_was_written()
    {
        using var scratch = new ScratchFolder();
        var (bytes, tokens) = Write(documents: 12, blockTokens: 7);
        Assert.Equal(TokenStream.FileLength(tokens.Length, 7), bytes.Length);
        var store = await StoreWithAsync(scratch, bytes);

        var stream = (await TokenStream.OpenAsync(store, Key))!;
        Assert.Equal(tokens.Length, stream.Tokens);
        Assert.Equal(12, stream.Documents);
        for (var start = 0; start <= tokens.Length; start += 5)
        {
            for (var end = start; end <= tokens.Length; end += 3)
            {
                Assert.Equal(tokens[start..end], await stream.ReadAsync(store, start, end));
            }
        }
        Assert.Equal(tokens, await stream.ReadAsync(store, 0, tokens.Length));
        Assert.Equal((tokens.Length, 12L), await TokenStream.VerifyAsync(new MemoryStream(bytes), Key));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => stream.ReadAsync(store, 0, tokens.Length + 1));
        Assert.Null(await TokenStream.OpenAsync(store, "tokens/none.tokens"));
    }

    [Fact]
    public async Task An_empty_stream_round_trips()
    {
        using var scratch = new ScratchFolder();
        var (bytes, _) = Write(documents: 0, blockTokens: 4);
        Assert.Equal(TokenStream.HeaderBytes, bytes.Length);
        var store = await StoreWithAsync(scratch, bytes);
        var stream = (await TokenStream.OpenAsync(store, Key))!;
        Assert.Equal(0, stream.Tokens);
        Assert.Empty(await stream.ReadAsync(store, 0, 0));
        Assert.Equal((0L, 0L), await TokenStream.VerifyAsync(new MemoryStream(bytes), Key));
    }

    public static TheoryData<string, Func<byte[], byte[]>, string> Damages => new()
    {
        { "empty file", _ => [], "is truncated" },
        { "not a stream", b => [.. "{\"json\": true}"u8.ToArray(), .. b], "not a token stream" },
        { "cut in the header", b => b[..40], "is truncated" },
        { "cut in the tokens", b => b[..(TokenStream.HeaderBytes + 10)], "is truncated" },
        { "cut in the table", b => b[..^5], "is truncated" },
        { "a flipped token bit", b => Flip(b, TokenStream.HeaderBytes + 9), "does not match its checksum" },
        { "a changed count", b => Flip(b, 16), "" },
        { "a changed document count", b => Flip(b, 24), "does not match its checksum" },
        { "a flipped table bit", b => Flip(b, b.Length - 3), "does not match its checksum" },
        { "a newer version", b => Flip(b, 8), "format version" },
    };

    private static byte[] Flip(byte[] bytes, int at)
    {
        var copy = (byte[])bytes.Clone();
        copy[at] ^= 0x01;
        return copy;
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task A_damaged_or_truncated_stream_is_a_clear_error_naming_it_never_wrong_tokens(string damage, Func<byte[], byte[]> harm, string expected)
    {
        using var scratch = new ScratchFolder();
        var (bytes, tokens) = Write(documents: 9, blockTokens: 8);
        var damaged = harm(bytes);
        var store = await StoreWithAsync(scratch, damaged);

        // A reader that opens the stream and reads all of it, as a profile shard does for its range.
        var read = await Record.ExceptionAsync(async () =>
        {
            var stream = await TokenStream.OpenAsync(store, Key);
            await stream!.ReadAsync(store, 0, tokens.Length);
        });
        var verified = await Record.ExceptionAsync(() => TokenStream.VerifyAsync(new MemoryStream(damaged), Key));
        foreach (var error in new[] { read, verified })
        {
            var invalid = Assert.IsType<InvalidDataException>(error);
            Assert.StartsWith($"The token stream '{Key}' is ", invalid.Message, StringComparison.Ordinal);
            Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
            Assert.EndsWith("; tokenize the corpus again.", invalid.Message, StringComparison.Ordinal);
        }
        Assert.NotEmpty(damage);
    }

    [Fact]
    public async Task Bytes_after_the_table_fail_verification()
    {
        var (bytes, _) = Write(documents: 3, blockTokens: 4);
        var error = await Assert.ThrowsAsync<InvalidDataException>(() => TokenStream.VerifyAsync(new MemoryStream([.. bytes, 0]), Key));
        Assert.Contains("bytes after its block table", error.Message, StringComparison.Ordinal);
    }
}
