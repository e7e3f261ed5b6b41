using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace Babel.Storage.Artifacts;

/// <summary>
/// What Babel's Azure Blob stores (artifacts, job journals) do alike on their one container: create it once before the
/// first write, and list names under a prefix in ordinal order; every call reports failure as <see cref="AzureStorageCalls"/> says.
/// </summary>
internal sealed class AzureBlobContainer(BlobContainerClient client)
{
    private readonly SemaphoreSlim _creation = new(1, 1);
    private volatile bool _exists;

    public BlobContainerClient Client => client;

    public Task<T> CallAsync<T>(Func<Task<T>> call, CancellationToken cancellationToken) => AzureStorageCalls.CallAsync(client, call, cancellationToken);

    /// <summary>
    /// Creates the container unless this instance already did or saw it. A SAS scoped to the container (a client's) may
    /// write in it but not create it: that refusal is not an error here, and a write to a missing container says so itself.
    /// </summary>
    public async Task EnsureExistsAsync(CancellationToken cancellationToken)
    {
        if (_exists) return;
        await _creation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_exists) return;
            try
            {
                await CallAsync(() => client.CreateIfNotExistsAsync(cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            }
            catch (RequestFailedException e) when (e.Status == 403 && e.ErrorCode is "AuthorizationPermissionMismatch" or "AuthorizationResourceTypeMismatch")
            {
            }
            _exists = true;
        }
        finally
        {
            _creation.Release();
        }
    }

    /// <summary>The names under <paramref name="prefix"/> in ordinal (UTF-16) order (the service lists in UTF-8 byte order); none when the container does not exist.</summary>
    public async Task<List<string>> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        ArtifactKey.ValidatePrefix(prefix);
        var names = await CallAsync(async () =>
        {
            var found = new List<string>();
            try
            {
                await foreach (var item in client.GetBlobsAsync(new GetBlobsOptions { Prefix = prefix.Length == 0 ? null : prefix }, cancellationToken).ConfigureAwait(false))
                    found.Add(item.Name);
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                // No container yet: nothing was ever written.
            }
            return found;
        }, cancellationToken).ConfigureAwait(false);
        names.Sort(StringComparer.Ordinal);
        return names;
    }
}
