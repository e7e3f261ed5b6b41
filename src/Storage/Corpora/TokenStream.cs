using System.Buffers.Binary;
using System.Security.Cryptography;
using Babel.Storage.Artifacts;

namespace Babel.Storage.Corpora;

/// <summary>
/// A language's token stream stored once (<c>.tokens</c>): its documents in corpus order, each as [BOS] and its token ids,
/// as int32 little-endian, so a worker reads the token range of its shard instead of tokenising the language again.
/// Layout: a 72-byte header (magic <c>BABELTOK</c>, version, bytes per token, token and document counts, tokens per block,
/// and the SHA-256 of the header's first 40 bytes with the block table), the tokens, then the block table: the SHA-256 of
/// every block of <see cref="BlockTokens"/> tokens. A range read checks the blocks it covers, so a damaged or truncated
/// file is a clear error, never a wrong count.
/// </summary>
public sealed class TokenStream
{
    public const string Extension = ".tokens";
    public const int HeaderBytes = 72;
    public const int Version = 1;
    public const int TokenBytes = 4;
    public const int HashBytes = 32;
    /// <summary>Tokens per checked block (64 KB): a shard reads little more than its range.</summary>
    public const int DefaultBlockTokens = 16384;
    private static ReadOnlySpan<byte> Magic => "BABELTOK"u8;

    private readonly byte[] _table;

    private TokenStream(string key, long tokens, long documents, int blockTokens, byte[] table)
    {
        Key = key;
        Tokens = tokens;
        Documents = documents;
        BlockTokens = blockTokens;
        _table = table;
    }

    /// <summary>The stream's artifact key.</summary>
    public string Key { get; }
    public long Tokens { get; }
    public long Documents { get; }
    public int BlockTokens { get; }

    /// <summary>The bytes of the header and the block table that an opened stream keeps (for a cache's bound).</summary>
    public long IndexBytes => HeaderBytes + _table.Length;

    /// <summary>Blocks of a stream of <paramref name="tokens"/> tokens.</summary>
    public static long Blocks(long tokens, int blockTokens) => (tokens + blockTokens - 1) / blockTokens;

    /// <summary>The exact length of a stream file of <paramref name="tokens"/> tokens.</summary>
    public static long FileLength(long tokens, int blockTokens) => HeaderBytes + tokens * TokenBytes + Blocks(tokens, blockTokens) * HashBytes;

    /// <summary>
    /// Opens the stream stored under <paramref name="key"/>: reads and checks its header and block table (its index, which
    /// is all an opened stream holds); null when there is no such object.
    /// </summary>
    public static async Task<TokenStream?> OpenAsync(IArtifactStore store, string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var name = key;
        var header = await store.GetRangeAsync(key, 0, HeaderBytes, cancellationToken).ConfigureAwait(false);
        if (header is null) return null;
        var (tokens, documents, blockTokens, digest) = ReadHeader(header, name);
        var blocks = Blocks(tokens, blockTokens);
        if (blocks * HashBytes > Array.MaxLength) throw Damaged(name, $"its header declares {tokens} tokens, more than a stream holds");
        var table = await store.GetRangeAsync(key, HeaderBytes + tokens * TokenBytes, (int)(blocks * HashBytes), cancellationToken).ConfigureAwait(false) ?? [];
        if (table.Length != blocks * HashBytes) throw Truncated(name, $"its block table has {table.Length} of {blocks * HashBytes} bytes");
        if (!Digest(header.AsSpan(0, 40), table).AsSpan().SequenceEqual(digest)) throw Damaged(name, "its header or block table does not match its checksum");
        return new TokenStream(key, tokens, documents, blockTokens, table);
    }

    /// <summary>
    /// Tokens [<paramref name="start"/>, <paramref name="end"/>) of the stream, read from <paramref name="store"/> (any store
    /// that holds the key: every block read is checked against the table).
    /// </summary>
    public async Task<long[]> ReadAsync(IArtifactStore store, long start, long end, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (start < 0 || end < start || end > Tokens)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"The range [{start}, {end}) is not inside the {Tokens} tokens of the token stream '{Key}'.");
        }
        var result = new long[end - start];
        if (result.Length == 0) return result;
        for (var block = start / BlockTokens; block * BlockTokens < end; block++)
        {
            var first = block * BlockTokens;
            var count = (int)Math.Min(BlockTokens, Tokens - first);
            var bytes = await store.GetRangeAsync(Key, HeaderBytes + first * TokenBytes, count * TokenBytes, cancellationToken).ConfigureAwait(false) ?? [];
            if (bytes.Length != count * TokenBytes) throw Truncated(Key, $"block {block} has {bytes.Length} of {count * TokenBytes} bytes");
            if (!SHA256.HashData(bytes).AsSpan().SequenceEqual(_table.AsSpan((int)(block * HashBytes), HashBytes))) throw Damaged(Key, $"block {block} does not match its checksum");
            var from = Math.Max(start, first);
            var to = Math.Min(end, first + count);
            for (var i = from; i < to; i++) result[i - start] = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan((int)(i - first) * TokenBytes, TokenBytes));
        }
        return result;
    }

    /// <summary>
    /// Reads a whole stream file from <paramref name="content"/> and checks every byte (header, blocks, table, nothing after
    /// it); returns its token and document counts. A damaged or truncated file is an <see cref="InvalidDataException"/>.
    /// </summary>
    public static async Task<(long Tokens, long Documents)> VerifyAsync(Stream content, string name, CancellationToken cancellationToken = default)
    {
        var header = new byte[HeaderBytes];
        if (await content.ReadAtLeastAsync(header, HeaderBytes, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false) != HeaderBytes)
        {
            throw Truncated(name, "it ends inside its header");
        }
        var (tokens, documents, blockTokens, digest) = ReadHeader(header, name);
        var blocks = Blocks(tokens, blockTokens);
        var hashes = new List<byte[]>();
        var buffer = new byte[blockTokens * TokenBytes];
        for (long block = 0; block < blocks; block++)
        {
            var count = (int)Math.Min(blockTokens, tokens - block * blockTokens) * TokenBytes;
            if (await content.ReadAtLeastAsync(buffer.AsMemory(0, count), count, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false) != count)
            {
                throw Truncated(name, $"it ends inside block {block} of {blocks}");
            }
            hashes.Add(SHA256.HashData(buffer.AsSpan(0, count)));
        }
        var table = new byte[blocks * HashBytes];
        if (await content.ReadAtLeastAsync(table, table.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false) != table.Length)
        {
            throw Truncated(name, "it ends inside its block table");
        }
        for (var block = 0; block < blocks; block++)
        {
            if (!hashes[block].AsSpan().SequenceEqual(table.AsSpan(block * HashBytes, HashBytes))) throw Damaged(name, $"block {block} does not match its checksum");
        }
        if (!Digest(header.AsSpan(0, 40), table).AsSpan().SequenceEqual(digest)) throw Damaged(name, "its header or block table does not match its checksum");
        if (await content.ReadAsync(new byte[1], cancellationToken).ConfigureAwait(false) != 0) throw Damaged(name, "it has bytes after its block table");
        return (tokens, documents);
    }

    private static (long Tokens, long Documents, int BlockTokens, byte[] Digest) ReadHeader(byte[] header, string name)
    {
        if (header.Length == 0) throw Truncated(name, "it is empty");
        if (header.Length < Magic.Length || !header.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw Damaged(name, "it does not start with BABELTOK, so it is not a token stream");
        if (header.Length < HeaderBytes) throw Truncated(name, $"its header has {header.Length} of {HeaderBytes} bytes");
        var span = header.AsSpan();
        var version = BinaryPrimitives.ReadInt32LittleEndian(span[8..]);
        if (version != Version) throw Damaged(name, $"it has format version {version}; this build reads version {Version}");
        var width = BinaryPrimitives.ReadInt32LittleEndian(span[12..]);
        var tokens = BinaryPrimitives.ReadInt64LittleEndian(span[16..]);
        var documents = BinaryPrimitives.ReadInt64LittleEndian(span[24..]);
        var blockTokens = BinaryPrimitives.ReadInt32LittleEndian(span[32..]);
        var reserved = BinaryPrimitives.ReadInt32LittleEndian(span[36..]);
        if (width != TokenBytes || tokens < 0 || documents < 0 || blockTokens < 1 || reserved != 0 || tokens > (long.MaxValue - HeaderBytes) / (TokenBytes + HashBytes))
        {
            throw Damaged(name, "its header holds impossible values");
        }
        return (tokens, documents, blockTokens, span[40..HeaderBytes].ToArray());
    }

    private static byte[] Digest(ReadOnlySpan<byte> headerFields, byte[] table)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(headerFields);
        hash.AppendData(table);
        return hash.GetHashAndReset();
    }

    private static InvalidDataException Truncated(string name, string detail) =>
        new($"The token stream '{name}' is truncated ({detail}); tokenize the corpus again.");

    private static InvalidDataException Damaged(string name, string detail) =>
        new($"The token stream '{name}' is damaged ({detail}); tokenize the corpus again.");

    /// <summary>
    /// Writes a token stream to a seekable stream (e.g. a temporary file) as documents are tokenised;
    /// <see cref="Complete"/> writes the block table and fills in the header.
    /// </summary>
    public sealed class Writer
    {
        private readonly Stream _destination;
        private readonly int _blockTokens;
        private readonly byte[] _block;
        private readonly MemoryStream _table = new();
        private int _inBlock;
        private bool _completed;

        public Writer(Stream destination, int blockTokens = DefaultBlockTokens)
        {
            ArgumentNullException.ThrowIfNull(destination);
            if (!destination.CanSeek || !destination.CanWrite) throw new ArgumentException("A token stream is written to a seekable, writable stream.", nameof(destination));
            ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
            _destination = destination;
            _blockTokens = blockTokens;
            _block = new byte[blockTokens * TokenBytes];
            _destination.Write(new byte[HeaderBytes]);
        }

        public long Tokens { get; private set; }
        public long Documents { get; private set; }

        /// <summary>Counts one more document; its tokens (its [BOS] first) follow with <see cref="Add"/>.</summary>
        public void BeginDocument() => Documents++;

        public void Add(int token)
        {
            if (_completed) throw new InvalidOperationException("The token stream is complete.");
            ArgumentOutOfRangeException.ThrowIfNegative(token);
            BinaryPrimitives.WriteInt32LittleEndian(_block.AsSpan(_inBlock * TokenBytes), token);
            Tokens++;
            if (++_inBlock == _blockTokens) Flush();
        }

        /// <summary>Writes the last block, the block table and the header; the destination then holds the whole stream.</summary>
        public void Complete()
        {
            if (_completed) return;
            Flush();
            _completed = true;
            var table = _table.ToArray();
            _destination.Write(table);
            var header = new byte[HeaderBytes];
            Magic.CopyTo(header);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), Version);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), TokenBytes);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), Tokens);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(24), Documents);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(32), _blockTokens);
            Digest(header.AsSpan(0, 40), table).CopyTo(header.AsSpan(40));
            _destination.Flush();
            _destination.Seek(0, SeekOrigin.Begin);
            _destination.Write(header);
            _destination.Flush();
        }

        private void Flush()
        {
            if (_inBlock == 0) return;
            var bytes = _block.AsSpan(0, _inBlock * TokenBytes);
            _destination.Write(bytes);
            _table.Write(SHA256.HashData(bytes));
            _inBlock = 0;
        }
    }
}
