using System.Buffers;
using System.Text.Json;

namespace Babel.Grains.Engine;

/// <summary>
/// The documents of several shards one worker ran in one batch, as one artifact: a JSON object from shard id to that
/// shard's document, each kept byte for byte. Short shards then cost one storage write per batch, not one each. A shard's
/// result artifact names its batch as <c>KEY#SHARD</c>.
/// </summary>
public static class ShardBatch
{
    /// <summary>The reference of <paramref name="shardId"/>'s document inside the batch <paramref name="key"/>.</summary>
    public static string Reference(string key, string shardId) => $"{key}#{shardId}";

    /// <summary>Splits a result artifact into its key and, for a batch, the shard it holds (null for a document of its own).</summary>
    public static (string Key, string? ShardId) Parse(string resultArtifact)
    {
        var hash = resultArtifact.IndexOf('#', StringComparison.Ordinal);
        return hash < 0 ? (resultArtifact, null) : (resultArtifact[..hash], resultArtifact[(hash + 1)..]);
    }

    /// <summary>The batch artifact holding <paramref name="documents"/> (each valid JSON).</summary>
    public static byte[] Write(IReadOnlyList<(string ShardId, byte[] Document)> documents)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var (shardId, document) in documents)
            {
                writer.WritePropertyName(shardId);
                writer.WriteRawValue(document, skipInputValidation: false);
            }
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The document of <paramref name="shardId"/> in <paramref name="batch"/>, byte for byte as its shard wrote it.</summary>
    public static byte[] Read(JsonDocument batch, string key, string shardId)
    {
        if (batch.RootElement.ValueKind != JsonValueKind.Object || !batch.RootElement.TryGetProperty(shardId, out var document))
            throw new InvalidDataException($"The shard batch {key} holds no document for shard {shardId}.");
        return System.Text.Encoding.UTF8.GetBytes(document.GetRawText());
    }
}
