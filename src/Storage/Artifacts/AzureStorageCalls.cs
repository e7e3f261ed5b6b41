using System.Net.Sockets;
using Azure;
using Azure.Storage.Blobs;

namespace Babel.Storage.Artifacts;

/// <summary>How every Azure Blob call of Babel's stores reports failure: an outage that may pass, or bad credentials.</summary>
internal static class AzureStorageCalls
{
    /// <summary>Runs one SDK call, turning "retries exhausted on network failures" into <see cref="StorageUnavailableException"/> and bad credentials into a user error.</summary>
    public static async Task<T> CallAsync<T>(BlobContainerClient container, Func<Task<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && IsUnreachable(e))
        {
            throw new StorageUnavailableException(
                $"Could not reach Azure Storage at {Endpoint(container)} (account '{container.AccountName}'); check the connection string and that the storage service is running.", e);
        }
        // Azure answers a wrong key with AuthenticationFailed, Azurite with AuthorizationFailure (which Azure also uses for a SAS without the permission).
        catch (RequestFailedException e) when (e.Status == 403 && e.ErrorCode is "AuthenticationFailed" or "AuthorizationFailure")
        {
            throw new UserInputException(
                $"Azure Storage at {Endpoint(container)} rejected the credentials of account '{container.AccountName}'; check the account key or SAS (and its permissions) in the connection string.", e);
        }
    }

    /// <summary>The account endpoint, e.g. <c>http://127.0.0.1:10000</c>.</summary>
    public static string Endpoint(BlobContainerClient container) => container.Uri.GetLeftPart(UriPartial.Authority);

    private static bool IsUnreachable(Exception e) => e switch
    {
        AggregateException aggregate => aggregate.InnerExceptions.Count > 0 && aggregate.InnerExceptions.All(IsUnreachable),
        RequestFailedException failed => failed.Status == 0,
        HttpRequestException or IOException or TimeoutException or SocketException => true,
        OperationCanceledException => true, // a network timeout surfaces as a cancellation the caller did not ask for
        _ => false,
    };
}
