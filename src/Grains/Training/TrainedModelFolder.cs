using System.IO.Compression;
using System.Text.Json;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Training;

/// <summary>The model folder a data-parallel job's leader stores when training ends (a sealed zip in the artifact store), read back by the client.</summary>
public static class TrainedModelFolder
{
    /// <summary>The unsealed zip of a finished job's model folder.</summary>
    public static async Task<byte[]> ReadAsync(IArtifactStore store, string jobId, CancellationToken cancellationToken)
    {
        var sealedZip = await store.GetBytesAsync(DataParallelRankRunner.ModelKey(jobId), cancellationToken)
            ?? throw new InvalidOperationException($"The model of training job {jobId} is missing from the artifact store.");
        return ZipArchives.Unseal(sealedZip) ?? throw new InvalidOperationException($"The model of training job {jobId} is damaged in the artifact store.");
    }

    /// <summary>The folder's <c>training.json</c>, or another JSON file of it.</summary>
    public static T Manifest<T>(byte[] zip, string fileName = TrainingManifest.FileName)
    {
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        var entry = archive.GetEntry(fileName) ?? throw new InvalidOperationException($"A trained model folder has no {fileName}.");
        using var stream = entry.Open();
        return JsonSerializer.Deserialize<T>(stream) ?? throw new InvalidOperationException($"A trained model folder's {fileName} is empty.");
    }


    /// <summary>Writes the folder's files into <paramref name="directory"/>, each atomically, and <paramref name="manifest"/> as <c>training.json</c> last.</summary>
    public static void Save<T>(byte[] zip, T manifest, string directory) =>
        Save(zip, directory, TrainingManifest.FileName, writeLast: _ => TrainingManifest.Save(directory, manifest));

    /// <summary>
    /// Writes the folder's files but <paramref name="last"/> into <paramref name="directory"/>, each atomically, then calls
    /// <paramref name="writeLast"/> (given the zip's copy of <paramref name="last"/>) to write that file, whose presence marks a finished folder.
    /// </summary>
    public static void Save(byte[] zip, string directory, string last, Action<string> writeLast)
    {
        Directory.CreateDirectory(directory);
        var staging = Path.Combine(directory, $".model-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new MemoryStream(zip, writable: false)) ZipArchives.ExtractToNewDirectory(stream, staging, "the trained model");
            foreach (var file in Directory.GetFiles(staging, "*", SearchOption.AllDirectories))
            {
                var relative = Path.GetRelativePath(staging, file);
                if (relative == last) continue;
                var target = Path.Combine(directory, relative);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                AtomicFile.WriteAllBytes(target, File.ReadAllBytes(file));
            }
            // Written last: its presence marks a finished model folder.
            writeLast(Path.Combine(staging, last));
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }
}
