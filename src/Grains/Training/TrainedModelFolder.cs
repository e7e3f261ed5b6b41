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

    /// <summary>The folder's <c>training.json</c>.</summary>
    public static T Manifest<T>(byte[] zip)
    {
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        var entry = archive.GetEntry(TrainingManifest.FileName) ?? throw new InvalidOperationException($"A trained model folder has no {TrainingManifest.FileName}.");
        using var stream = entry.Open();
        return JsonSerializer.Deserialize<T>(stream) ?? throw new InvalidOperationException($"A trained model folder's {TrainingManifest.FileName} is empty.");
    }

    /// <summary>Writes the folder's files into <paramref name="directory"/>, each atomically, and <paramref name="manifest"/> as <c>training.json</c> last.</summary>
    public static void Save<T>(byte[] zip, T manifest, string directory)
    {
        Directory.CreateDirectory(directory);
        var staging = Path.Combine(directory, $".model-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new MemoryStream(zip, writable: false)) ZipArchives.ExtractToNewDirectory(stream, staging, "the trained model");
            foreach (var file in Directory.GetFiles(staging, "*", SearchOption.AllDirectories))
            {
                var relative = Path.GetRelativePath(staging, file);
                if (relative == TrainingManifest.FileName) continue;
                var target = Path.Combine(directory, relative);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                AtomicFile.WriteAllBytes(target, File.ReadAllBytes(file));
            }
            // Written last: its presence marks a finished model folder.
            TrainingManifest.Save(directory, manifest);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }
}
