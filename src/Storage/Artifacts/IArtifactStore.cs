namespace Babel.Storage.Artifacts;

/// <summary>
/// The one place Babel keeps artifacts: shard results, model folders, reports. Keys are relative
/// '/'-separated paths such as <c>jobs/JOB/shards/SHARD.json</c> or <c>models/SHA256/config.json</c>
/// (no empty or '.'/'..' segments, no leading '/', no backslashes; see <see cref="ArtifactKey"/>).
/// Every write is atomic for readers: a reader sees the old object, the new one, or none, never part of one.
/// </summary>
public interface IArtifactStore
{
    /// <summary>Stores <paramref name="content"/> under <paramref name="key"/>, replacing any object there, atomically for readers.</summary>
    Task PutAsync(string key, Stream content, CancellationToken cancellationToken = default);

    /// <summary>Stores <paramref name="content"/> under <paramref name="key"/>; see <see cref="PutAsync"/>.</summary>
    Task PutBytesAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default);

    /// <summary>The whole object, or null when <paramref name="key"/> does not exist.</summary>
    Task<byte[]?> GetBytesAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>A stream over one version of the object (the caller disposes it), or null when <paramref name="key"/> does not exist.</summary>
    Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Up to <paramref name="count"/> bytes of the object from <paramref name="offset"/> (fewer when it ends sooner, none
    /// past its end), or null when <paramref name="key"/> does not exist. Stores that can read a range without the bytes
    /// before it (a local file, a blob's HTTP range) override this; the default reads and skips.
    /// </summary>
    async Task<byte[]?> GetRangeAsync(string key, long offset, int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        await using var stream = await OpenReadAsync(key, cancellationToken).ConfigureAwait(false);
        if (stream is null) return null;
        var skip = new byte[Math.Min(offset, 1 << 16)];
        for (var left = offset; left > 0;)
        {
            var read = await stream.ReadAsync(skip.AsMemory(0, (int)Math.Min(left, skip.Length)), cancellationToken).ConfigureAwait(false);
            if (read == 0) return [];
            left -= read;
        }
        var buffer = new byte[count];
        var filled = await stream.ReadAtLeastAsync(buffer, count, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        return filled == count ? buffer : buffer[..filled];
    }

    Task<bool> ExistsAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Every key that starts with <paramref name="prefix"/> (a plain string prefix, as in blob storage:
    /// pass <c>"jobs/JOB/"</c> for a folder), in ordinal order. An empty prefix lists everything.
    /// </summary>
    IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>Deletes the object under <paramref name="key"/>; deleting a missing key is not an error.</summary>
    Task DeleteAsync(string key, CancellationToken cancellationToken = default);
}
