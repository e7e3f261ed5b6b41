using System.Text.RegularExpressions;

namespace Babel.Silo;

/// <summary>The Azure Storage service a connection string is used for.</summary>
public enum StorageService
{
    /// <summary>Azure Table: Orleans' cluster membership (silos write it; clients only read the gateways).</summary>
    Table,

    /// <summary>Azure Blob: the artifact store, and on silos the <c>jobs</c> grain state.</summary>
    Blob,
}

/// <summary>
/// The Azure Storage connection string of cluster mode, read only from configuration key
/// <c>BABEL_STORAGE_CONNECTION_STRING</c> (an environment variable of that name) or <c>ConnectionStrings:BabelStorage</c>;
/// <c>BABEL_STORAGE_TABLE_CONNECTION_STRING</c> and <c>BABEL_STORAGE_BLOB_CONNECTION_STRING</c>, when set, replace it for
/// their service alone, so a client can hold two narrow SAS connection strings (a table SAS that reads the membership, a
/// container SAS on the artifact container) instead of the account key.
/// It is a secret: <see cref="ToString"/> and <see cref="Redact"/> keep it out of every message.
/// </summary>
public sealed partial class StorageConnectionString
{
    public const string Key = "BABEL_STORAGE_CONNECTION_STRING";
    public const string TableKey = "BABEL_STORAGE_TABLE_CONNECTION_STRING";
    public const string BlobKey = "BABEL_STORAGE_BLOB_CONNECTION_STRING";
    public const string ConnectionStringName = "BabelStorage";

    private StorageConnectionString(string value, string source)
    {
        Value = value;
        Source = source;
    }

    /// <summary>The secret itself; pass it to storage clients only.</summary>
    public string Value { get; }

    /// <summary>The configuration key it was read from, for messages that must say which setting to fix.</summary>
    public string Source { get; }

    /// <summary>Every key a connection string may come from; their values are redacted from startup messages.</summary>
    public static IReadOnlyList<string> Keys { get; } = [Key, TableKey, BlobKey];

    /// <summary>The configured connection string, or null when neither key is set.</summary>
    public static StorageConnectionString? From(IConfiguration configuration)
    {
        var value = configuration[Key];
        var source = Key;
        if (string.IsNullOrWhiteSpace(value))
        {
            value = configuration.GetConnectionString(ConnectionStringName);
            source = $"ConnectionStrings:{ConnectionStringName}";
        }
        return string.IsNullOrWhiteSpace(value) ? null : new StorageConnectionString(value.Trim(), source);
    }

    /// <summary>
    /// The connection string for <paramref name="service"/>: <see cref="TableKey"/> or <see cref="BlobKey"/> when set, else
    /// the shared one of <see cref="From(IConfiguration)"/>; null when none is set.
    /// </summary>
    public static StorageConnectionString? From(IConfiguration configuration, StorageService service)
    {
        var key = KeyOf(service);
        var value = configuration[key];
        return string.IsNullOrWhiteSpace(value) ? From(configuration) : new StorageConnectionString(value.Trim(), key);
    }

    /// <summary>The key that holds <paramref name="service"/>'s own connection string.</summary>
    public static string KeyOf(StorageService service) => service == StorageService.Table ? TableKey : BlobKey;

    /// <summary>
    /// Whether <paramref name="service"/>'s client accepts it (a table SAS connection string has no blob endpoint, and needs
    /// none); the clients' parse errors are not shown because they may quote the secret.
    /// </summary>
    public bool IsWellFormed(StorageService service)
    {
        try
        {
            _ = service == StorageService.Table ? new Azure.Data.Tables.TableServiceClient(Value) : (object)new Azure.Storage.Blobs.BlobServiceClient(Value);
            return true;
        }
        // Azure.Storage.Blobs 12.30 throws NullReferenceException for a connection string without a blob endpoint (a table SAS's).
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException or NullReferenceException)
        {
            return false;
        }
    }

    /// <summary>Never the value: it would end up in logs.</summary>
    public override string ToString() => "(redacted storage connection string)";

    /// <summary><paramref name="message"/> with this connection string and any account key or SAS token replaced by <c>***</c>.</summary>
    public string Redact(string message) => RedactSecrets(message.Replace(Value, "***", StringComparison.Ordinal));

    /// <summary><paramref name="message"/> with any <c>AccountKey=</c> or <c>SharedAccessSignature=</c> value replaced by <c>***</c>.</summary>
    public static string RedactSecrets(string message) => SecretPair().Replace(message, "$1=***");

    [GeneratedRegex("(AccountKey|SharedAccessSignature|sig)=[^;\\s\"']+", RegexOptions.IgnoreCase)]
    private static partial Regex SecretPair();
}
