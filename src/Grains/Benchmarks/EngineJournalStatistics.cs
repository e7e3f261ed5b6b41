using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Storage.Journals;

namespace Babel.Grains.Benchmarks;

/// <summary>
/// What a finished job's journal says about the engine: completions per second from the first lease to the last
/// completion, each shard's engine time as its worker measured it (writing the previous result, completing it and leasing
/// this shard: <see cref="ShardOutcome.CoordinationSeconds"/>), and the bytes of job state written per shard event.
/// </summary>
public sealed record EngineJournalStatistics(int Completions, long Events, double Seconds, double MeanEventMilliseconds, double P99EventMilliseconds, long JournalBytes, long PlanBytes)
{
    public double CompletionsPerSecond => Seconds > 0 ? Completions / Seconds : 0;

    /// <summary>Journal and plan bytes over the job's shard events (the header, a few hundred bytes, is written 3 times per job whatever its size).</summary>
    public double StateBytesPerEvent => Events > 0 ? (JournalBytes + PlanBytes) / (double)Events : 0;

    public static async Task<EngineJournalStatistics> ReadAsync(IJobJournal journal, string jobId, CancellationToken cancellationToken)
    {
        var plan = await journal.ReadAsync(JobGrain.PlanName(jobId), cancellationToken) ?? throw new InvalidOperationException($"Job {jobId} has no plan in the job store.");
        var engineSeconds = new List<double>();
        long bytes = 0, events = 0;
        DateTimeOffset? first = null, last = null;
        foreach (var segment in await journal.ListAsync(JournalWriter.Folder(jobId), cancellationToken))
        {
            var content = await journal.ReadAsync(segment, cancellationToken) ?? [];
            bytes += content.Length;
            foreach (var entry in JournalEntry.ReadLines(content, segment))
            {
                events++;
                if (entry.Kind == ShardEventKind.Leased && (first is null || entry.Time < first)) first = entry.Time;
                if (entry.Kind != ShardEventKind.Completed) continue;
                if (last is null || entry.Time > last) last = entry.Time;
                engineSeconds.Add(entry.CoordinationSeconds ?? 0);
            }
        }
        engineSeconds.Sort();
        var p99 = engineSeconds.Count == 0 ? 0 : engineSeconds[Math.Min(engineSeconds.Count - 1, (int)Math.Ceiling(0.99 * engineSeconds.Count) - 1)];
        return new EngineJournalStatistics(engineSeconds.Count, events, ((last ?? default) - (first ?? default)).TotalSeconds,
            engineSeconds.Count == 0 ? 0 : engineSeconds.Average() * 1000, p99 * 1000, bytes, plan.Length);
    }
}
