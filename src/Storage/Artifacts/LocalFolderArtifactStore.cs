using System.Runtime.CompilerServices;

namespace Babel.Storage.Artifacts;

/// <summary>
/// An <see cref="IArtifactStore"/> on a local folder (the embedded mode's <c>./.babel</c> or <c>--store</c>):
/// key <c>a/b/c.json</c> is the file <c>ROOT/a/b/c.json</c>. Writes go to a temporary file beside the
/// target and are renamed into place (<see cref="AtomicFile"/>); an open reader keeps the version it opened.
/// </summary>
public sealed class LocalFolderArtifactStore : IArtifactStore
{
    private readonly string _root;

    public LocalFolderArtifactStore(string root)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        _root = Path.GetFullPath(root);
        Directory.CreateDirectory(_root);
    }

    /// <summary>The absolute folder that holds the artifacts.</summary>
    public string Root => _root;

    public Task PutAsync(string key, Stream content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        return AtomicFile.WriteAsync(PathOf(key), (stream, token) => content.CopyToAsync(stream, token), cancellationToken);
    }

    public Task PutBytesAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default) =>
        AtomicFile.WriteAsync(PathOf(key), (stream, token) => stream.WriteAsync(content, token).AsTask(), cancellationToken);

    public async Task<byte[]?> GetBytesAsync(string key, CancellationToken cancellationToken = default)
    {
        var path = PathOf(key);
        try
        {
            return await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsMissing(e, path))
        {
            return null;
        }
    }

    public Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken = default)
    {
        var path = PathOf(key);
        try
        {
            // FileShare.Delete lets a writer rename a new version over this one while it is being read.
            Stream stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true);
            return Task.FromResult<Stream?>(stream);
        }
        catch (Exception e) when (IsMissing(e, path))
        {
            return Task.FromResult<Stream?>(null);
        }
    }

    public async Task<byte[]?> GetRangeAsync(string key, long offset, int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var path = PathOf(key);
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, FileOptions.Asynchronous);
            var buffer = new byte[(int)Math.Clamp(RandomAccess.GetLength(file) - offset, 0, count)];
            var filled = 0;
            while (filled < buffer.Length)
            {
                var read = await RandomAccess.ReadAsync(file, buffer.AsMemory(filled), offset + filled, cancellationToken).ConfigureAwait(false);
                if (read == 0) break;
                filled += read;
            }
            return filled == buffer.Length ? buffer : buffer[..filled];
        }
        catch (Exception e) when (IsMissing(e, path))
        {
            return null;
        }
    }

    public Task<bool> ExistsAsync(string key, CancellationToken cancellationToken = default) =>
        Task.FromResult(File.Exists(PathOf(key)));

    public async IAsyncEnumerable<string> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArtifactKey.ValidatePrefix(prefix);
        // Only the folder that holds the prefix's last complete segment can contain matches.
        var slash = prefix.LastIndexOf('/');
        var folder = slash < 0 ? _root : Path.Combine(_root, prefix[..slash].Replace('/', Path.DirectorySeparatorChar));
        if (!Directory.Exists(folder)) yield break;
        var keys = new List<string>();
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = false };
        foreach (var file in Directory.EnumerateFiles(folder, "*", options))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var key = Path.GetRelativePath(_root, file).Replace(Path.DirectorySeparatorChar, '/');
            if (key.StartsWith(prefix, StringComparison.Ordinal) && !IsWorkInProgress(key)) keys.Add(key);
        }
        keys.Sort(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            yield return key;
        }
        await Task.CompletedTask.ConfigureAwait(false);
    }

    public Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        var path = PathOf(key);
        try
        {
            File.Delete(path);
        }
        catch (DirectoryNotFoundException)
        {
        }
        return Task.CompletedTask;
    }

    private string PathOf(string key) =>
        Path.Combine(_root, ArtifactKey.Validate(key).Replace('/', Path.DirectorySeparatorChar));

    // Temporary files and folders of writes in progress (or left by a crash) are not artifacts.
    private static bool IsWorkInProgress(string key) => key.Split('/').Any(AtomicFile.IsTemporaryName);

    private static bool IsMissing(Exception e, string path) =>
        e is FileNotFoundException or DirectoryNotFoundException
        || (e is UnauthorizedAccessException && Directory.Exists(path));
}
