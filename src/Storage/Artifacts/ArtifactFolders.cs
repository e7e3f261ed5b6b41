using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Babel.Storage.Artifacts;

/// <summary>
/// Folders (model folders, corpora) in an <see cref="IArtifactStore"/>, content-addressed:
/// a folder is stored once under <c>PREFIX/SHA256/relative/path</c>, and the <see cref="CompleteMarker"/>
/// object, written last, says the upload finished. Downloads are materialised atomically in a local cache.
/// </summary>
public static class ArtifactFolders
{
    /// <summary>Name of the object written after every file of a folder: its presence marks the folder complete.</summary>
    public const string CompleteMarker = ".complete";

    private const int ParallelTransfers = 4;

    /// <summary>
    /// Uploads every file of <paramref name="localFolder"/> under <c>PREFIX/HASH/</c>, where HASH is
    /// <see cref="ComputeContentHashAsync"/>, unless that folder is already complete in the store; writes the
    /// marker last and returns the folder key <c>PREFIX/HASH</c>.
    /// </summary>
    public static async Task<string> UploadFolderAsync(this IArtifactStore store, string localFolder, string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArtifactKey.Validate(prefix, nameof(prefix));
        var files = ListFiles(localFolder);
        var hash = await ComputeContentHashAsync(localFolder, cancellationToken).ConfigureAwait(false);
        var folderKey = $"{prefix}/{hash}";
        var markerKey = $"{folderKey}/{CompleteMarker}";
        if (await store.ExistsAsync(markerKey, cancellationToken).ConfigureAwait(false)) return folderKey;

        await Parallel.ForEachAsync(
            files,
            new ParallelOptions { MaxDegreeOfParallelism = ParallelTransfers, CancellationToken = cancellationToken },
            async (file, token) =>
            {
                await using var content = File.OpenRead(file.FullPath);
                await store.PutAsync($"{folderKey}/{file.RelativePath}", content, token).ConfigureAwait(false);
            }).ConfigureAwait(false);

        var marker = JsonSerializer.SerializeToUtf8Bytes(new
        {
            sha256 = hash,
            files = files.Count,
            bytes = files.Sum(f => new FileInfo(f.FullPath).Length),
        });
        await store.PutBytesAsync(markerKey, marker, cancellationToken).ConfigureAwait(false);
        return folderKey;
    }

    /// <summary>
    /// Materialises the complete folder <paramref name="key"/> (as returned by <see cref="UploadFolderAsync"/>)
    /// at <c>localCacheRoot/key</c> and returns that path. The folder is downloaded into a temporary folder and
    /// renamed into place, so a present folder is always complete and is reused; when two processes download
    /// the same key at once, one rename wins and the other process reuses its result.
    /// </summary>
    public static async Task<string> DownloadFolderAsync(this IArtifactStore store, string key, string localCacheRoot, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArtifactKey.Validate(key);
        ArgumentException.ThrowIfNullOrWhiteSpace(localCacheRoot);
        var localPath = Path.Combine(Path.GetFullPath(localCacheRoot), key.Replace('/', Path.DirectorySeparatorChar));
        if (Directory.Exists(localPath)) return localPath;

        var marker = await store.GetBytesAsync($"{key}/{CompleteMarker}", cancellationToken).ConfigureAwait(false)
            ?? throw new UserInputException($"The artifact folder '{key}' is missing or incomplete in the store (it has no {CompleteMarker} marker); check the key or upload the folder again.");
        var declared = ReadMarker(marker, key);
        var expectedHash = key[(key.LastIndexOf('/') + 1)..];

        var keys = new List<string>();
        await foreach (var objectKey in store.ListAsync(key + "/", cancellationToken).ConfigureAwait(false))
        {
            if (objectKey != $"{key}/{CompleteMarker}") keys.Add(objectKey);
        }
        if (keys.Count != declared.Files)
            throw new UserInputException($"The artifact folder '{key}' holds {keys.Count} files but its marker declares {declared.Files}; upload the folder again.");

        long downloaded = 0;
        await AtomicFile.CreateDirectoryAsync(localPath, async temporary =>
        {
            var root = Path.GetFullPath(temporary) + Path.DirectorySeparatorChar;
            await Parallel.ForEachAsync(
                keys,
                new ParallelOptions { MaxDegreeOfParallelism = ParallelTransfers, CancellationToken = cancellationToken },
                async (objectKey, token) =>
                {
                    var target = Path.GetFullPath(Path.Combine(root, objectKey[(key.Length + 1)..].Replace('/', Path.DirectorySeparatorChar)));
                    if (!target.StartsWith(root, StringComparison.Ordinal))
                        throw new UserInputException($"The artifact '{objectKey}' points outside its folder '{key}'; the store holds a foreign object there.");
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    await using var source = await store.OpenReadAsync(objectKey, token).ConfigureAwait(false)
                        ?? throw new InvalidOperationException($"The artifact '{objectKey}' disappeared while its folder was being downloaded.");
                    await using var destination = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
                    var buffer = new byte[1 << 16];
                    int read;
                    // Bounded by what the marker declares: a store that serves more than was uploaded cannot fill the disk.
                    while ((read = await source.ReadAsync(buffer, token).ConfigureAwait(false)) > 0)
                    {
                        if (Interlocked.Add(ref downloaded, read) > declared.Bytes)
                            throw new UserInputException($"The artifact folder '{key}' holds more than the {declared.Bytes:N0} bytes its marker declares; upload the folder again.");
                        await destination.WriteAsync(buffer.AsMemory(0, read), token).ConfigureAwait(false);
                    }
                }).ConfigureAwait(false);
            // The key names the content: a folder that hashes otherwise was damaged in the store or on the way.
            var actual = await ComputeContentHashAsync(temporary, cancellationToken).ConfigureAwait(false);
            if (actual != expectedHash)
                throw new UserInputException($"The artifact folder '{key}' does not match its content hash (it hashes to {actual}); it was damaged in the store, so upload the folder again.");
        }).ConfigureAwait(false);
        return localPath;
    }

    /// <summary>What an upload's marker declares: the folder's file count and total bytes.</summary>
    private readonly record struct FolderMarker(int Files, long Bytes);

    private static FolderMarker ReadMarker(byte[] marker, string key)
    {
        try
        {
            using var json = JsonDocument.Parse(marker);
            var files = json.RootElement.GetProperty("files").GetInt32();
            var bytes = json.RootElement.GetProperty("bytes").GetInt64();
            if (files < 0 || bytes < 0) throw new FormatException("negative counts");
            return new FolderMarker(files, bytes);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or FormatException or InvalidOperationException)
        {
            throw new UserInputException($"The marker of the artifact folder '{key}' is unreadable ({e.Message}); upload the folder again.", e);
        }
    }

    /// <summary>
    /// Lowercase hex SHA-256 over the folder's files in ordinal order of their '/'-separated relative paths:
    /// for each file its UTF-8 path, a zero byte, its length as 8 bytes big-endian, then its bytes.
    /// It depends only on names and contents, not on timestamps or the folder's location.
    /// </summary>
    public static async Task<string> ComputeContentHashAsync(string localFolder, CancellationToken cancellationToken = default)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var header = new byte[8];
        var buffer = new byte[1 << 16];
        foreach (var file in ListFiles(localFolder))
        {
            hash.AppendData(Encoding.UTF8.GetBytes(file.RelativePath));
            hash.AppendData([0]);
            await using var content = new FileStream(file.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            BinaryPrimitives.WriteInt64BigEndian(header, content.Length);
            hash.AppendData(header);
            int read;
            while ((read = await content.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, read);
            }
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static List<(string RelativePath, string FullPath)> ListFiles(string localFolder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(localFolder);
        var root = Path.GetFullPath(localFolder);
        if (!Directory.Exists(root))
            throw new UserInputException($"The folder '{localFolder}' does not exist; check the path.");
        var files = Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Select(path => (RelativePath: Path.GetRelativePath(root, path).Replace(Path.DirectorySeparatorChar, '/'), FullPath: path))
            .Where(file => !file.RelativePath.Split('/').Any(AtomicFile.IsTemporaryName))
            .ToList();
        files.Sort((a, b) => string.CompareOrdinal(a.RelativePath, b.RelativePath));
        return files;
    }
}
