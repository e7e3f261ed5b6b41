using Babel.Storage.Artifacts;

namespace Babel.Storage.Journals;

/// <summary>
/// An <see cref="IJobJournal"/> in a local folder (embedded mode): a log is a file appended to and flushed to disk before
/// the append returns; an object is written through a temporary file. A crash in the middle of an append can leave a torn
/// last line, which readers of a log skip.
/// </summary>
public sealed class LocalFolderJobJournal(string root) : IJobJournal
{
    private readonly string _root = Path.GetFullPath(root);

    public string Root => _root;

    public async Task AppendAsync(string log, ReadOnlyMemory<byte> records, CancellationToken cancellationToken = default)
    {
        var path = PathOf(log);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, 1 << 12, useAsync: false);
        await stream.WriteAsync(records, cancellationToken).ConfigureAwait(false);
        stream.Flush(flushToDisk: true);
    }

    public async Task<byte[]?> ReadAsync(string name, CancellationToken cancellationToken = default)
    {
        var path = PathOf(name);
        try
        {
            return await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public Task WriteAsync(string name, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        AtomicFile.Write(PathOf(name), stream => stream.Write(content.Span));
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArtifactKey.ValidatePrefix(prefix);
        // A prefix ending in '/' names a folder; otherwise list the folder that holds it and filter by name.
        var slash = prefix.LastIndexOf('/');
        var folder = Path.Combine(_root, slash < 0 ? "" : prefix[..slash].Replace('/', Path.DirectorySeparatorChar));
        if (!Directory.Exists(folder)) return Task.FromResult<IReadOnlyList<string>>([]);
        var names = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => !AtomicFile.IsTemporaryName(Path.GetFileName(f)))
            .Select(f => Path.GetRelativePath(_root, f).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        return Task.FromResult<IReadOnlyList<string>>(names);
    }

    private string PathOf(string name) => Path.Combine(_root, ArtifactKey.Validate(name).Replace('/', Path.DirectorySeparatorChar));
}
