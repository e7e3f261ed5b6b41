using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Babel.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Runtime.Hosting;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace Babel.Grains.Engine;

/// <summary>Options of <see cref="LocalFolderGrainStorage"/>, one set per provider name.</summary>
public sealed class LocalFolderGrainStorageOptions : IStorageProviderSerializerOptions
{
    /// <summary>The folder that holds the state files; created when missing.</summary>
    public string RootDirectory { get; set; } = "";

    /// <summary>Serializer of the state; defaults to the silo's <see cref="IGrainStorageSerializer"/> (JSON unless configured otherwise).</summary>
    public IGrainStorageSerializer GrainStorageSerializer { get; set; } = null!;
}

/// <summary>
/// Grain storage for the embedded mode: each grain's state is one JSON file,
/// <c>ROOT/STATE-NAME/GRAIN-TYPE/KEY.json</c>, holding <c>{"etag": "...", "state": ...}</c>, so job state
/// survives a restart and can be read by a person.
/// </summary>
/// <remarks>
/// Files are replaced atomically (<see cref="AtomicFile"/>): a crash mid-write leaves the previous state,
/// never a torn file. The ETag is a fresh random id per write rather than a counter, so a stale activation
/// cannot match a record that was cleared and written again (a counter would restart at 1). A mismatch
/// throws <see cref="InconsistentStateException"/>, as Orleans expects. Read-compare-write runs under a
/// per-file lock, which makes the check exact within one process — the embedded mode's only process.
/// When the serializer does not produce JSON, the state is kept base64-encoded under <c>stateBase64</c>.
/// </remarks>
public sealed class LocalFolderGrainStorage(string name, LocalFolderGrainStorageOptions options, IActivatorProvider activatorProvider)
    : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
{
    private const int MaximumFileNameLength = 200;
    private const int LockStripes = 64;

    private readonly string _root = Path.GetFullPath(options.RootDirectory);
    private readonly IGrainStorageSerializer _serializer = options.GrainStorageSerializer
        ?? throw new ArgumentException($"The grain storage '{name}' has no GrainStorageSerializer.", nameof(options));
    private readonly SemaphoreSlim[] _locks = Enumerable.Range(0, LockStripes).Select(_ => new SemaphoreSlim(1, 1)).ToArray();

    /// <summary>The absolute folder that holds the state files.</summary>
    public string Root => _root;

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        var record = await ReadRecordAsync(path).ConfigureAwait(false);
        if (record is null)
        {
            Reset(grainState);
            return;
        }
        grainState.State = _serializer.Deserialize<T>(record.Value.State);
        grainState.ETag = record.Value.ETag;
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        var payload = _serializer.Serialize(grainState.State);
        var gate = LockFor(path);
        await gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var stored = await ReadRecordAsync(path).ConfigureAwait(false);
            CheckETag<T>("write", stateName, grainId, grainState.ETag, stored?.ETag);
            var etag = Guid.NewGuid().ToString("N");
            AtomicFile.WriteAllBytes(path, Encode(etag, payload));
            grainState.ETag = etag;
            grainState.RecordExists = true;
        }
        finally
        {
            gate.Release();
        }
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        var gate = LockFor(path);
        await gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var stored = await ReadRecordAsync(path).ConfigureAwait(false);
            if (stored is not null)
            {
                CheckETag<T>("clear", stateName, grainId, grainState.ETag, stored.Value.ETag);
                File.Delete(path);
            }
            Reset(grainState);
        }
        finally
        {
            gate.Release();
        }
    }

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(
            OptionFormattingUtilities.Name<LocalFolderGrainStorage>(name),
            ServiceLifecycleStage.ApplicationServices,
            _ =>
            {
                Directory.CreateDirectory(_root);
                return Task.CompletedTask;
            });

    /// <summary>The state file of one grain's named state.</summary>
    public string PathOf(string stateName, GrainId grainId) =>
        Path.Combine(_root, FileNameFor(stateName), FileNameFor(grainId.Type.ToString()!), FileNameFor(grainId.Key.ToString()!) + ".json");

    private void CheckETag<T>(string operation, string stateName, GrainId grainId, string? expected, string? stored)
    {
        if (string.Equals(expected, stored, StringComparison.Ordinal)) return;
        throw new InconsistentStateException(
            $"Version conflict on {operation} of state '{stateName}' ({typeof(T).Name}) of grain {grainId} in grain storage '{name}': the grain holds ETag '{expected ?? "none"}' but the stored state has '{stored ?? "none"}'.",
            stored ?? "", expected ?? "");
    }

    private void Reset<T>(IGrainState<T> grainState)
    {
        grainState.State = activatorProvider.GetActivator<T>().Create();
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    private SemaphoreSlim LockFor(string path) =>
        _locks[(int)((uint)StringComparer.Ordinal.GetHashCode(path) % LockStripes)];

    private static byte[] Encode(string etag, BinaryData payload)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false }))
        {
            writer.WriteStartObject();
            writer.WriteString("etag", etag);
            if (IsJson(payload))
            {
                writer.WritePropertyName("state");
                writer.WriteRawValue(payload.ToMemory().Span, skipInputValidation: true);
            }
            else
            {
                writer.WriteBase64String("stateBase64", payload.ToMemory().Span);
            }
            writer.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static bool IsJson(BinaryData payload)
    {
        try
        {
            using var _ = JsonDocument.Parse(payload.ToMemory());
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static async Task<(string ETag, BinaryData State)?> ReadRecordAsync(string path)
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(path).ConfigureAwait(false);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        try
        {
            using var document = JsonDocument.Parse(bytes);
            var root = document.RootElement;
            var etag = root.GetProperty("etag").GetString() ?? throw new JsonException("etag is null");
            var state = root.TryGetProperty("state", out var json)
                ? BinaryData.FromString(json.GetRawText())
                : BinaryData.FromBytes(root.GetProperty("stateBase64").GetBytesFromBase64());
            return (etag, state);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new UserInputException($"The grain state file '{path}' is not a valid state record; restore it from a backup or delete it to start that grain afresh.", e);
        }
    }

    /// <summary>A file name that is safe and reversible for ordinary ids, and a hash for very long ones.</summary>
    private static string FileNameFor(string value)
    {
        var escaped = Uri.EscapeDataString(value);
        if (escaped.StartsWith('.')) escaped = "%2E" + escaped[1..];
        if (escaped.Length == 0) escaped = "%00";
        return escaped.Length <= MaximumFileNameLength
            ? escaped
            : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
    }
}

/// <summary>Registration of <see cref="LocalFolderGrainStorage"/>.</summary>
public static class LocalFolderGrainStorageExtensions
{
    /// <summary>Adds grain storage <paramref name="name"/> that keeps each grain's state as a JSON file under <paramref name="root"/>.</summary>
    public static ISiloBuilder AddLocalFolderGrainStorage(this ISiloBuilder builder, string name, string root)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        return builder.ConfigureServices(services =>
        {
            services.AddOptions<LocalFolderGrainStorageOptions>(name).Configure(options => options.RootDirectory = root);
            services.AddTransient<IPostConfigureOptions<LocalFolderGrainStorageOptions>, DefaultStorageProviderSerializerOptionsConfigurator<LocalFolderGrainStorageOptions>>();
            services.AddGrainStorage(name, (provider, providerName) => new LocalFolderGrainStorage(
                providerName,
                provider.GetRequiredService<IOptionsMonitor<LocalFolderGrainStorageOptions>>().Get(providerName),
                provider.GetRequiredService<IActivatorProvider>()));
        });
    }
}
