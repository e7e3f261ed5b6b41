using System.Text;

namespace Babel.Storage;

/// <summary>
/// Writes files and folders so that a reader never sees them half-written: content goes to a
/// temporary name beside the target and is renamed into place only when complete.
/// </summary>
public static class AtomicFile
{
    private static readonly UTF8Encoding _utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> on a temporary file, then renames it into place.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temporary = TemporaryNameFor(full);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Async form of <see cref="Write"/>: <paramref name="write"/> fills a temporary file that is then renamed into place.</summary>
    public static async Task WriteAsync(string path, Func<Stream, CancellationToken, Task> write, CancellationToken cancellationToken = default)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temporary = TemporaryNameFor(full);
        try
        {
            await using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                await write(stream, cancellationToken).ConfigureAwait(false);
                await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>
    /// True for the names this class gives its temporary files and folders, so that listings can skip
    /// work in progress (and leftovers of a crash).
    /// </summary>
    public static bool IsTemporaryName(string name)
    {
        var fileName = Path.GetFileName(name.TrimEnd('/', Path.DirectorySeparatorChar));
        if (fileName.EndsWith(".old", StringComparison.Ordinal)) fileName = fileName[..^".old".Length];
        const int suffixLength = 1 + 32 + 4; // ".{guid:N}.tmp"
        return fileName.Length > suffixLength + 1
            && fileName[0] == '.'
            && fileName.EndsWith(".tmp", StringComparison.Ordinal)
            && fileName[^suffixLength] == '.'
            && fileName.AsSpan(fileName.Length - suffixLength + 1, 32).ContainsAnyExcept("0123456789abcdef") == false;
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, _utf8NoBom, leaveOpen: true);
            writer.Write(text);
        });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, stream => stream.Write(copy));
    }

    /// <summary>
    /// Builds a folder through <paramref name="build"/> in a temporary sibling folder, then renames it to
    /// <paramref name="path"/>, replacing an existing folder of that name.
    /// </summary>
    public static void WriteDirectory(string path, Action<string> build)
    {
        var full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temporary = TemporaryNameFor(full);
        Directory.CreateDirectory(temporary);
        try
        {
            build(temporary);
            if (Directory.Exists(full))
            {
                var old = TemporaryNameFor(full) + ".old";
                Directory.Move(full, old);
                Directory.Move(temporary, full);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                Directory.Move(temporary, full);
            }
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Builds a folder through <paramref name="build"/> in a temporary sibling folder and renames it to
    /// <paramref name="path"/> unless that folder already exists. Unlike <see cref="WriteDirectory"/> it never
    /// replaces a folder someone may be reading: when another writer got there first, this build is discarded
    /// and the result is false.
    /// </summary>
    public static async Task<bool> CreateDirectoryAsync(string path, Func<string, Task> build)
    {
        var full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (Directory.Exists(full)) return false;
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temporary = TemporaryNameFor(full);
        Directory.CreateDirectory(temporary);
        try
        {
            await build(temporary).ConfigureAwait(false);
            try
            {
                // rename(2) of a folder onto an existing non-empty folder fails, so exactly one writer wins.
                Directory.Move(temporary, full);
                return true;
            }
            catch (IOException) when (Directory.Exists(full))
            {
                Directory.Delete(temporary, recursive: true);
                return false;
            }
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
    }

    private static string TemporaryNameFor(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");

    private static void TryDelete(string file)
    {
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
