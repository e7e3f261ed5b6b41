using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>The cluster's job list, persisted; workers read the running jobs from it.</summary>
public sealed class JobRegistryGrain(
    [PersistentState("registry", JobGrain.StorageName)] IPersistentState<JobRegistryRecord> state) : Grain, IJobRegistryGrain
{
    public async Task RegisterAsync(string jobId)
    {
        // Only a running job registers itself, so a job listed as finished comes back only if it runs after all.
        if (state.State.Jobs.TryGetValue(jobId, out var running) && running) return;
        state.State.Jobs[jobId] = true;
        await state.WriteStateAsync();
    }

    public async Task MarkFinishedAsync(string jobId)
    {
        if (state.State.Jobs.TryGetValue(jobId, out var running) && !running) return;
        state.State.Jobs[jobId] = false;
        await state.WriteStateAsync();
    }

    public Task<IReadOnlyList<string>> ListAsync() => Task.FromResult<IReadOnlyList<string>>([.. state.State.Jobs.Keys]);

    public Task<IReadOnlyList<string>> ListRunningAsync() =>
        Task.FromResult<IReadOnlyList<string>>([.. state.State.Jobs.Where(j => j.Value).Select(j => j.Key)]);
}

/// <summary>Job id → running, ordered by id.</summary>
[GenerateSerializer]
public sealed class JobRegistryRecord
{
    [Id(0)] public SortedDictionary<string, bool> Jobs { get; set; } = new(StringComparer.Ordinal);
}
