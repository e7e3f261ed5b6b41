using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Azure;
using Azure.Core;
using Azure.Storage;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace Babel.Storage.Artifacts;

/// <summary>
/// An <see cref="IArtifactStore"/> on one Azure Blob container (cluster and Kubernetes modes; Azurite in tests):
/// key <c>a/b/c.json</c> is the block blob <c>a/b/c.json</c>. The container is created on first write when the credential
/// may create it; a SAS scoped to the container (a client's) may not, so there it must exist already.
/// </summary>
/// <remarks>
/// Writes are atomic for readers without a temporary blob: a block blob's new content becomes visible
/// only when it is committed, by the single Put Blob request or by the final Put Block List, so readers
/// see the old or the new object, never a mix. Transient faults are retried by the SDK's retry policy
/// (<see cref="CreateClientOptions"/>); when retries run out on a network failure the caller gets a
/// <see cref="UserInputException"/> naming the endpoint, because the usual cause is the configuration.
/// </remarks>
public sealed partial class AzureBlobArtifactStore : IArtifactStore
{
    /// <summary>Block size of uploads: each request stays well inside the network timeout.</summary>
    private const int TransferSize = 8 << 20;

    private static readonly StorageTransferOptions _transferOptions = new()
    {
        InitialTransferSize = TransferSize,
        MaximumTransferSize = TransferSize,
        MaximumConcurrency = 4,
    };

    private readonly BlobContainerClient _container;
    private readonly AzureBlobContainer _store;

    public AzureBlobArtifactStore(BlobContainerClient container)
    {
        ArgumentNullException.ThrowIfNull(container);
        _container = container;
        _store = new AzureBlobContainer(container);
    }

    /// <summary>The container that holds the artifacts.</summary>
    public BlobContainerClient Container => _container;

    /// <summary>
    /// A store on container <paramref name="containerName"/> of the account in <paramref name="connectionString"/>,
    /// with the retry policy of <see cref="CreateClientOptions"/>. A malformed connection string or container
    /// name is a <see cref="UserInputException"/>.
    /// </summary>
    public static AzureBlobArtifactStore Create(string connectionString, string containerName)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new UserInputException("The Azure Storage connection string is empty; pass one such as 'UseDevelopmentStorage=true' or 'DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...'.");
        if (containerName is null || !ContainerNamePattern().IsMatch(containerName))
            throw new UserInputException($"'{containerName}' is not a valid Azure Blob container name; use 3 to 63 lowercase letters, digits and single hyphens, starting with a letter or digit.");
        BlobServiceClient service;
        try
        {
            service = new BlobServiceClient(connectionString, CreateClientOptions());
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
        {
            throw new UserInputException("The Azure Storage connection string is malformed; copy it again from the storage account's 'Access keys' page (or use 'UseDevelopmentStorage=true' for Azurite).", e);
        }
        return new AzureBlobArtifactStore(service.GetBlobContainerClient(containerName));
    }

    /// <summary>
    /// Client options with a bounded retry policy: exponential back-off from 0.4 s, capped at 2 s, over 6 retries
    /// (about 9 s of waiting in all) survives a storage outage of several seconds, and a dead endpoint that
    /// refuses connections fails in about 9 s instead of the SDK's default minutes. The cap keeps recovery
    /// within 2 s of the service's return. The 15 s network timeout bounds one request, which moves at most
    /// one 8 MiB block; an endpoint that swallows packets takes up to 7 × 15 s to give up.
    /// </summary>
    public static BlobClientOptions CreateClientOptions()
    {
        var options = new BlobClientOptions();
        options.Retry.Mode = RetryMode.Exponential;
        options.Retry.MaxRetries = 6;
        options.Retry.Delay = TimeSpan.FromMilliseconds(400);
        options.Retry.MaxDelay = TimeSpan.FromSeconds(2);
        options.Retry.NetworkTimeout = TimeSpan.FromSeconds(15);
        return options;
    }

    public async Task PutAsync(string key, Stream content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        await WriteAsync(() => blob.UploadAsync(content, new BlobUploadOptions { TransferOptions = _transferOptions }, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    public async Task PutBytesAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        await WriteAsync(() => blob.UploadAsync(new BinaryData(content), new BlobUploadOptions { TransferOptions = _transferOptions }, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    public async Task<byte[]?> GetBytesAsync(string key, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
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

    public async Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        try
        {
            // One GET: the SDK resumes a broken download with If-Match on the ETag, so the stream is one version.
            var result = await CallAsync(() => blob.DownloadStreamingAsync(cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            return result.Value.Content;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
    }

    public async Task<byte[]?> GetRangeAsync(string key, long offset, int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0) return await ExistsAsync(key, cancellationToken).ConfigureAwait(false) ? [] : null;
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        try
        {
            var result = await CallAsync(() => blob.DownloadContentAsync(new BlobDownloadOptions { Range = new HttpRange(offset, count) }, cancellationToken), cancellationToken).ConfigureAwait(false);
            return result.Value.Content.ToArray();
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
        catch (RequestFailedException e) when (e.Status == 416)
        {
            // A range that starts at or past the end: the object has no bytes there.
            return [];
        }
    }

    public async Task<bool> ExistsAsync(string key, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        try
        {
            var result = await CallAsync(() => blob.ExistsAsync(cancellationToken), cancellationToken).ConfigureAwait(false);
            return result.Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return false;
        }
    }

    public async IAsyncEnumerable<string> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (var key in await _store.ListAsync(prefix, cancellationToken).ConfigureAwait(false))
        {
            yield return key;
        }
    }

    public async Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        var blob = _container.GetBlobClient(ArtifactKey.Validate(key));
        try
        {
            await CallAsync(() => blob.DeleteIfExistsAsync(cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
        }
    }

    /// <summary>Creates the container if needed (and allowed), then runs the upload <paramref name="write"/>.</summary>
    private async Task WriteAsync<T>(Func<Task<T>> write, CancellationToken cancellationToken)
    {
        await _store.EnsureExistsAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await CallAsync(write, cancellationToken).ConfigureAwait(false);
        }
        catch (RequestFailedException e) when (e.Status == 404 && e.ErrorCode == "ContainerNotFound")
        {
            throw new UserInputException(
                $"The artifact container '{_container.Name}' does not exist at {Endpoint} and this credential may not create it; " +
                "create it with the account's key (az storage container create, as deploy/k8s/README.md shows) or run a silo job first.", e);
        }
    }

    private Task<T> CallAsync<T>(Func<Task<T>> call, CancellationToken cancellationToken) => _store.CallAsync(call, cancellationToken);

    private string Endpoint => AzureStorageCalls.Endpoint(_container);

    [GeneratedRegex("^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")]
    private static partial Regex ContainerNamePattern();
}
