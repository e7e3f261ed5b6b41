using System.Buffers;
using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>
/// One line of a job's journal: one shard event, by the shard's position in the plan. A job's state is its header, its
/// plan and the replay of these lines in order; <c>babel logs</c> shows them as <see cref="ShardEvent"/>s.
/// </summary>
/// <param name="Kind">What happened.</param>
/// <param name="Shard">The shard's position in the plan.</param>
/// <param name="Lease">The lease the event concerns (issued, completed, failed, expired or lost).</param>
/// <param name="Time">When the job grain recorded it.</param>
/// <param name="Worker">The worker that holds or held the lease.</param>
/// <param name="Attempt">The lease's attempt number.</param>
/// <param name="Result">A completion's document in the artifact store.</param>
/// <param name="Totals">A completion's exact totals.</param>
/// <param name="Seconds">A completion's compute time.</param>
/// <param name="CoordinationSeconds">A completion's engine time before it (see <see cref="ShardOutcome.CoordinationSeconds"/>).</param>
/// <param name="Error">A failure's message.</param>
/// <param name="InputError">A failure caused by a bad input, which ends the job at once.</param>
public sealed record JournalEntry(
    [property: JsonPropertyName("k")] ShardEventKind Kind,
    [property: JsonPropertyName("s")] int Shard,
    [property: JsonPropertyName("l")] Guid Lease,
    [property: JsonPropertyName("t")] DateTimeOffset Time,
    [property: JsonPropertyName("w")] string? Worker,
    [property: JsonPropertyName("a")] int Attempt,
    [property: JsonPropertyName("r")] string? Result = null,
    [property: JsonPropertyName("x")] ImmutableSortedDictionary<string, long>? Totals = null,
    [property: JsonPropertyName("c")] double? Seconds = null,
    [property: JsonPropertyName("o")] double? CoordinationSeconds = null,
    [property: JsonPropertyName("e")] string? Error = null,
    [property: JsonPropertyName("i")] bool? InputError = null)
{
    private static readonly JsonSerializerOptions _json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Appends this entry as one JSON line.</summary>
    public void WriteLine(IBufferWriter<byte> output)
    {
        using (var writer = new Utf8JsonWriter(output)) JsonSerializer.Serialize(writer, this, _json);
        output.Write("\n"u8);
    }

    /// <summary>
    /// The entries of one journal segment, in order. A last line without its newline is a write a crash cut short and is
    /// skipped; any other line that does not parse makes the journal unreadable, with one sentence naming the segment and line.
    /// </summary>
    public static List<JournalEntry> ReadLines(ReadOnlySpan<byte> content, string segment)
    {
        var entries = new List<JournalEntry>();
        var line = 0;
        while (content.Length > 0)
        {
            var end = content.IndexOf((byte)'\n');
            if (end < 0) break;
            line++;
            try
            {
                entries.Add(JsonSerializer.Deserialize<JournalEntry>(content[..end], _json) ?? throw new JsonException("null entry"));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"The job journal {segment} is corrupt at line {line} ({e.Message}); the job cannot be resumed from it.", e);
            }
            content = content[(end + 1)..];
        }
        return entries;
    }

    /// <summary>This entry as <c>babel logs</c> shows it.</summary>
    public ShardEvent ToEvent(long sequence, string shardId) => new(sequence, Time, shardId, Kind, Worker, Attempt, Seconds, Error);
}
