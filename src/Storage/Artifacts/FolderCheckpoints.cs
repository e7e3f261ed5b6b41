using System.IO.Compression;

namespace Babel.Storage.Artifacts;

/// <summary>
/// A working folder (a training run's checkpoint, a finished model folder) as one sealed zip under a key of an
/// <see cref="IArtifactStore"/>: stored whole, so a reader sees the folder of one moment, and unpacked as untrusted input.
/// </summary>
public static class FolderCheckpoints
{
    /// <summary>Zips <paramref name="work"/> and stores it under <paramref name="key"/> (the store replaces the object atomically).</summary>
    public static void Upload(IArtifactStore store, string key, string work, CancellationToken cancellationToken)
    {
        using var zip = new MemoryStream();
        // Weights barely compress; the fastest level keeps the pause after a checkpoint short.
        ZipFile.CreateFromDirectory(work, zip, CompressionLevel.Fastest, includeBaseDirectory: false);
        store.PutBytesAsync(key, ZipArchives.Seal(zip.GetBuffer().AsSpan(0, (int)zip.Length)), cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>Unpacks the zip under <paramref name="key"/> into <paramref name="work"/> when that folder is missing; false when there was nothing intact to restore.</summary>
    public static bool Restore(IArtifactStore store, string key, string work, CancellationToken cancellationToken)
    {
        if (Directory.Exists(work)) return false;
        var stored = store.GetBytesAsync(key, cancellationToken).GetAwaiter().GetResult();
        // A checkpoint damaged in the store is no checkpoint: the run trains from the start, which gives the same weights.
        if (stored is null || ZipArchives.Unseal(stored) is not { } bytes) return false;
        var temporary = $"{work}.restore-{Guid.NewGuid():N}";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(work))!);
            // The zip comes back from the store: unpacked as untrusted input (entries inside the folder, bounded size).
            using (var zip = new MemoryStream(bytes, writable: false)) ZipArchives.ExtractToNewDirectory(zip, temporary, $"the checkpoint {key}");
            // The rename makes the folder appear complete or not at all; if another attempt got there first, its folder wins.
            if (Directory.Exists(work)) return false;
            Directory.Move(temporary, work);
            return true;
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
    }

}
