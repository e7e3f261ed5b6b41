using System.IO.Compression;

namespace Babel.Storage.Artifacts;

/// <summary>
/// Unpacks a zip read back from the artifact store (e.g. a training checkpoint) as untrusted input: every entry must be
/// a plain relative path inside the target folder, and the entries' count and unpacked size are bounded, so a crafted
/// or corrupt archive cannot write outside the folder or fill the disk.
/// </summary>
public static class ZipArchives
{
    /// <summary>Unpacked bytes a checkpoint zip may hold by default (64 GiB: a multi-billion-parameter student).</summary>
    public const long DefaultMaxBytes = 64L << 30;

    /// <summary>Entries a checkpoint zip may hold by default.</summary>
    public const int DefaultMaxEntries = 10_000;

    /// <summary>
    /// <paramref name="zip"/> behind its SHA-256, as one object: a reader can tell an archive damaged in the store (or cut
    /// short) from an intact one without a second object that could disagree with it.
    /// </summary>
    public static byte[] Seal(ReadOnlySpan<byte> zip) => [.. System.Security.Cryptography.SHA256.HashData(zip), .. zip];

    /// <summary>The archive inside <paramref name="sealedZip"/>, or null when it does not match its SHA-256 (damaged, cut short, or not sealed).</summary>
    public static byte[]? Unseal(byte[] sealedZip)
    {
        const int hashLength = 32;
        if (sealedZip.Length < hashLength) return null;
        var zip = sealedZip[hashLength..];
        return System.Security.Cryptography.SHA256.HashData(zip).AsSpan().SequenceEqual(sealedZip.AsSpan(0, hashLength)) ? zip : null;
    }

    /// <summary>Unpacks <paramref name="zip"/> into the new folder <paramref name="directory"/>; <paramref name="source"/> names the archive in errors.</summary>
    public static void ExtractToNewDirectory(Stream zip, string directory, string source, long maxBytes = DefaultMaxBytes, int maxEntries = DefaultMaxEntries)
    {
        ZipArchive archive;
        try
        {
            archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException e)
        {
            throw new UserInputException($"{source} is not a readable zip archive ({e.Message}); delete it so it is written again.", e);
        }
        using (archive)
        {
            if (archive.Entries.Count > maxEntries) throw new UserInputException($"{source} holds {archive.Entries.Count} entries, more than the {maxEntries} allowed; it is not a Babel archive.");
            var root = Path.GetFullPath(directory) + Path.DirectorySeparatorChar;
            Directory.CreateDirectory(root);
            long total = 0;
            var buffer = new byte[1 << 16];
            foreach (var entry in archive.Entries)
            {
                var target = Path.GetFullPath(Path.Combine(root, entry.FullName));
                if (entry.FullName.Length == 0 || Path.IsPathRooted(entry.FullName) || entry.FullName.Contains('\\', StringComparison.Ordinal) || !target.StartsWith(root, StringComparison.Ordinal))
                {
                    throw new UserInputException($"{source} has the entry '{entry.FullName}', which points outside its folder; it is not a Babel archive.");
                }
                if (entry.FullName.EndsWith('/'))
                {
                    Directory.CreateDirectory(target);
                    continue;
                }
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                try
                {
                    using var input = entry.Open();
                    using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write);
                    int read;
                    // Counted as unpacked, not as declared: an entry's header can lie about its size.
                    while ((read = input.Read(buffer)) > 0)
                    {
                        total += read;
                        if (total > maxBytes) throw new UserInputException($"{source} unpacks to more than {maxBytes:N0} bytes; it is not a Babel archive.");
                        output.Write(buffer, 0, read);
                    }
                }
                catch (InvalidDataException e)
                {
                    throw new UserInputException($"{source} is corrupt at '{entry.FullName}' ({e.Message}); delete it so it is written again.", e);
                }
            }
        }
    }
}
