using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>The cluster's job list, persisted; workers read the running jobs from it, first submitted first.</summary>
public sealed class JobRegistryGrain(
    [PersistentState("registry", JobGrain.StorageName)] IPersistentState<JobRegistryRecord> state) : Grain, IJobRegistryGrain
{
    public async Task RegisterAsync(string jobId)
    {
        var record = state.State;
        // Only a running job registers itself, so a job listed as finished comes back only if it runs after all.
        if (record.Jobs.TryGetValue(jobId, out var running) && running) return;
        record.Jobs[jobId] = true;
        record.Submissions++;
        record.Submitted[jobId] = record.Submissions;
        await state.WriteStateAsync();
    }

    public async Task MarkFinishedAsync(string jobId)
    {
        var record = state.State;
        if (record.Jobs.TryGetValue(jobId, out var running) && !running) return;
        record.Jobs[jobId] = false;
        record.Submitted.Remove(jobId);
        await state.WriteStateAsync();
    }

    public Task<IReadOnlyList<string>> ListAsync() => Task.FromResult<IReadOnlyList<string>>([.. state.State.Jobs.Keys]);

    /// <summary>
    /// The running jobs in the order they were submitted, a queue: a worker goes to a later job only when the earlier ones
    /// have no shard left to lease, so no job waits behind one submitted after it. (A job registered before the order was
    /// kept counts as submitted before every other.)
    /// </summary>
    public Task<IReadOnlyList<string>> ListRunningAsync()
    {
        var record = state.State;
        return Task.FromResult<IReadOnlyList<string>>(
            [.. record.Jobs.Where(j => j.Value).Select(j => j.Key).OrderBy(j => record.Submitted.GetValueOrDefault(j)).ThenBy(j => j, StringComparer.Ordinal)]);
    }
}

/// <summary>Job id → running, ordered by id; and the order the running jobs were submitted in.</summary>
[GenerateSerializer]
public sealed class JobRegistryRecord
{
    [Id(0)] public SortedDictionary<string, bool> Jobs { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Registrations so far: the clock of <see cref="Submitted"/>.</summary>
    [Id(1)] public long Submissions { get; set; }

    /// <summary>Running job id → the registration that made it run (1 for the first job ever registered).</summary>
    [Id(2)] public Dictionary<string, long> Submitted { get; set; } = new(StringComparer.Ordinal);
}
