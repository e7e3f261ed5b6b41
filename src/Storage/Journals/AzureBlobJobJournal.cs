using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Specialized;
using Babel.Storage.Artifacts;

namespace Babel.Storage.Journals;

/// <summary>
/// An <see cref="IJobJournal"/> on one Azure Blob container (cluster and Kubernetes modes): a log is an append blob, one
/// Append Block per append (atomic: a block lands whole or not at all), an object a block blob.
/// </summary>
/// <remarks>
/// An append blob holds at most 50,000 blocks, which is why the job engine starts a new log segment every
/// <see cref="MaxBlocksPerLog"/> appends. The SDK retries a block whose answer was lost, so a block can land twice:
/// the engine replays records idempotently.
/// </remarks>
public sealed class AzureBlobJobJournal : IJobJournal
{
    /// <summary>Appends one log takes before its writer starts the next segment (the service allows 50,000 blocks).</summary>
    public const int MaxBlocksPerLog = 40_000;

    /// <summary>Largest block the service accepts from every API version Babel runs against.</summary>
    private const int MaxBlockBytes = 4 << 20;

    private readonly AzureBlobContainer _store;
    private readonly BlobContainerClient _container;

    public AzureBlobJobJournal(BlobContainerClient container)
    {
        _store = new AzureBlobContainer(container);
        _container = container;
    }

    /// <summary>A journal on container <paramref name="containerName"/> of the account in <paramref name="connectionString"/>.</summary>
    public static AzureBlobJobJournal Create(string connectionString, string containerName) =>
        new(new BlobServiceClient(connectionString, AzureBlobArtifactStore.CreateClientOptions()).GetBlobContainerClient(containerName));

    public async Task AppendAsync(string log, ReadOnlyMemory<byte> records, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetAppendBlobClient(ArtifactKey.Validate(log));
        await _store.EnsureExistsAsync(cancellationToken).ConfigureAwait(false);
        foreach (var block in Blocks(records))
        {
            try
            {
                await AppendBlockAsync(blob, block, cancellationToken).ConfigureAwait(false);
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                await CallAsync(() => blob.CreateIfNotExistsAsync(cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
                await AppendBlockAsync(blob, block, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private Task AppendBlockAsync(AppendBlobClient blob, ReadOnlyMemory<byte> block, CancellationToken cancellationToken) =>
        CallAsync(async () =>
        {
            using var stream = new MemoryStream(block.ToArray(), writable: false);
            return await blob.AppendBlockAsync(stream, cancellationToken: cancellationToken).ConfigureAwait(false);
        }, cancellationToken);

    /// <summary>Cuts <paramref name="records"/> at line ends into blocks the service accepts.</summary>
    private static IEnumerable<ReadOnlyMemory<byte>> Blocks(ReadOnlyMemory<byte> records)
    {
        while (records.Length > MaxBlockBytes)
        {
            var cut = records.Span[..MaxBlockBytes].LastIndexOf((byte)'\n') + 1;
            if (cut == 0) throw new ArgumentException($"A journal record is longer than {MaxBlockBytes} bytes.", nameof(records));
            yield return records[..cut];
            records = records[cut..];
        }
        if (records.Length > 0) yield return records;
    }

    public async Task<byte[]?> ReadAsync(string name, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(name));
        try
        {
            var result = await CallAsync(() => blob.DownloadContentAsync(cancellationToken), cancellationToken).ConfigureAwait(false);
            return result.Value.Content.ToArray();
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
    }

    public async Task WriteAsync(string name, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(name));
        await _store.EnsureExistsAsync(cancellationToken).ConfigureAwait(false);
        await CallAsync(() => blob.UploadAsync(new BinaryData(content), overwrite: true, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken cancellationToken = default) =>
        await _store.ListAsync(prefix, cancellationToken).ConfigureAwait(false);

    private Task<T> CallAsync<T>(Func<Task<T>> call, CancellationToken cancellationToken) => _store.CallAsync(call, cancellationToken);
}
