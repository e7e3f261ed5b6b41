using System.Text.RegularExpressions;

namespace Babel.Silo;

/// <summary>
/// The Azure Storage connection string of cluster mode, read only from configuration key
/// <c>BABEL_STORAGE_CONNECTION_STRING</c> (an environment variable of that name) or <c>ConnectionStrings:BabelStorage</c>.
/// It is a secret: <see cref="ToString"/> and <see cref="Redact"/> keep it out of every message.
/// </summary>
public sealed partial class StorageConnectionString
{
    public const string Key = "BABEL_STORAGE_CONNECTION_STRING";
    public const string ConnectionStringName = "BabelStorage";

    private StorageConnectionString(string value) => Value = value;

    /// <summary>The secret itself; pass it to storage clients only.</summary>
    public string Value { get; }

    /// <summary>The configured connection string, or null when neither key is set.</summary>
    public static StorageConnectionString? From(IConfiguration configuration)
    {
        var value = configuration[Key];
        if (string.IsNullOrWhiteSpace(value))
            value = configuration.GetConnectionString(ConnectionStringName);
        return string.IsNullOrWhiteSpace(value) ? null : new StorageConnectionString(value.Trim());
    }

    /// <summary>Whether the storage clients accept it; their parse errors are not shown because they may quote the secret.</summary>
    public bool IsWellFormed()
    {
        try
        {
            _ = new Azure.Data.Tables.TableServiceClient(Value);
            _ = new Azure.Storage.Blobs.BlobServiceClient(Value);
            return true;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
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
