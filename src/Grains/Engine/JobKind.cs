using System.Collections.Immutable;
using Babel.Contracts;
using Babel.Storage;

namespace Babel.Grains.Engine;

/// <summary>
/// One type of job as the engine sees it: JSON parameters in, a plan of shards, shards run on workers, and a result
/// assembled from the finished job. Job kinds derive from <see cref="JobKind{TParameters, TShard, TResult}"/>, which
/// types all of it; this untyped face is what workers and <c>babel result</c> use.
/// </summary>
public interface IJobKind
{
    string Name { get; }

    /// <summary>Validates <paramref name="parameters"/> (clear <see cref="UserInputException"/> otherwise) and returns the deterministic plan.</summary>
    Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken);

    /// <summary>Runs one shard on the calling (dedicated) thread.</summary>
    ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken);

    /// <summary>Assembles a succeeded job's result without writing it: what decides whether a waiting command ends well (e.g. a failure-rate bound).</summary>
    Task AssembleAsync(FinishedJob job, CancellationToken cancellationToken);

    /// <summary>Assembles a succeeded job's result and writes its files into <paramref name="directory"/>; returns the one-line summary.</summary>
    Task<string> SaveResultAsync(FinishedJob job, string directory, CancellationToken cancellationToken);
}

/// <summary>
/// A job kind: typed parameters, a deterministic plan of typed shard slices, a shard runner, and the typed result
/// assembled from the finished job's totals and shard documents. <see cref="RunShard"/> must be deterministic for a
/// shard, so results do not depend on which worker ran it or how often, and its totals must be exact integers, so they
/// sum in any order. A shard calls one function of <c>Babel.Modeling</c>; tensors never appear here.
/// </summary>
/// <typeparam name="TParameters">The job's parameters (a JSON record; artifact keys, never local paths or secrets).</typeparam>
/// <typeparam name="TShard">One shard's slice of the work.</typeparam>
/// <typeparam name="TResult">What the finished job assembles to; <see cref="Save"/> writes it.</typeparam>
public abstract class JobKind<TParameters, TShard, TResult> : IJobKind
    where TParameters : class
{
    public abstract string Name { get; }

    /// <summary>Checks what a user can get wrong, with one sentence each; runs on the client before submission and on every worker.</summary>
    protected virtual void Validate(TParameters parameters)
    {
    }

    /// <summary>
    /// Checks what a planning job produced for these parameters (e.g. the token streams of a tokenize job), after
    /// <see cref="Validate"/>: a kind planned from another job's output checks the user's options first (<see cref="CheckOptions"/>),
    /// so a typo costs one sentence before that job runs, not after.
    /// </summary>
    protected virtual void ValidatePlanningInputs(TParameters parameters)
    {
    }

    /// <summary>The checks of the user's options alone (<see cref="Validate"/>), for a command to run before the planning jobs that fill in the rest.</summary>
    public void CheckOptions(TParameters parameters) => Validate(parameters);

    /// <summary>The deterministic plan; <paramref name="artifacts"/> opens the inputs the parameters name.</summary>
    protected abstract Task<IReadOnlyList<Shard<TShard>>> PlanAsync(TParameters parameters, IArtifactResolver artifacts, CancellationToken cancellationToken);

    /// <summary>Runs one shard on the worker's dedicated thread.</summary>
    protected abstract ShardResult RunShard(ShardContext context, TParameters parameters, Shard<TShard> shard, CancellationToken cancellationToken);

    /// <summary>The result of a succeeded job, from its totals and shard documents.</summary>
    public abstract Task<TResult> AssembleAsync(FinishedJob<TParameters> job, CancellationToken cancellationToken);

    /// <summary>Writes <paramref name="result"/>'s files into <paramref name="directory"/> (each file atomically).</summary>
    public abstract void Save(TResult result, string directory);

    /// <summary>One line that says what the result holds.</summary>
    public abstract string Summary(TResult result);

    /// <summary>Parameters from their JSON, validated; bad JSON or values are one sentence naming the job kind.</summary>
    public TParameters Parse(string json)
    {
        var parameters = JobParameters.Deserialize<TParameters>(json, Name);
        Validate(parameters);
        ValidatePlanningInputs(parameters);
        return parameters;
    }

    public string Serialize(TParameters parameters) => JobParameters.Serialize(parameters);

    async Task<IReadOnlyList<ShardSpec>> IJobKind.PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var shards = await PlanAsync(Parse(parameters), artifacts, cancellationToken);
        return [.. shards.Select(s => new ShardSpec(s.Id, JobParameters.Serialize(s.Slice), s.Items))];
    }

    ShardResult IJobKind.RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken) =>
        RunShard(context, ParseCached(parameters), new Shard<TShard>(shard.ShardId, JobParameters.Deserialize<TShard>(shard.Parameters, Name), shard.Items), cancellationToken);

    // The parameters last parsed for a shard: a job's shards share them, and large ones (masks of MBs) are not re-parsed per shard.
    private volatile Tuple<string, TParameters>? _lastParsed;

    private TParameters ParseCached(string json)
    {
        if (_lastParsed is { } last && string.Equals(last.Item1, json, StringComparison.Ordinal)) return last.Item2;
        var parsed = Parse(json);
        _lastParsed = Tuple.Create(json, parsed);
        return parsed;
    }

    async Task IJobKind.AssembleAsync(FinishedJob job, CancellationToken cancellationToken) => await AssembleAsync(Finished(job), cancellationToken);

    async Task<string> IJobKind.SaveResultAsync(FinishedJob job, string directory, CancellationToken cancellationToken)
    {
        var result = await AssembleAsync(Finished(job), cancellationToken);
        Save(result, directory);
        return Summary(result);
    }

    /// <summary>The typed view of a finished job of this kind.</summary>
    public FinishedJob<TParameters> Finished(FinishedJob job) => new(job, Parse(job.Spec.Parameters));
}

/// <summary>One shard of a plan: an id unique in the job (it names the shard's result file), its slice and how many items it covers.</summary>
public sealed record Shard<TShard>(string Id, TShard Slice, long Items);

/// <summary>What a shard produced: the document written to the artifact store, and its exact totals.</summary>
public sealed record ShardResult(byte[] Content, ImmutableSortedDictionary<string, long> Totals)
{
    /// <summary>A shard result whose document is <paramref name="document"/> as JSON.</summary>
    public static ShardResult Of<T>(T document, IEnumerable<KeyValuePair<string, long>> totals) =>
        new(JobParameters.SerializeToUtf8Bytes(document), ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, totals));
}

/// <summary>Materialises artifact-store folders (models, corpora) as local folders.</summary>
public interface IArtifactResolver
{
    Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken);
}

/// <summary>
/// What a worker gives a shard: its identity, resolved artifacts, the artifact store, its cache of loaded models, and the
/// cache of inputs read once per worker process (<see cref="WorkerCache.Shared"/> unless given).
/// </summary>
public sealed class ShardContext(string worker, string device, int threads, IArtifactResolver artifacts, Modeling.Checkpoints.ModelReplicas models,
    Storage.Artifacts.IArtifactStore store, WorkerCache? cache = null)
{
    public string Worker { get; } = worker;
    public string Device { get; } = device;
    public int Threads { get; } = threads;
    public IArtifactResolver Artifacts { get; } = artifacts;
    public Modeling.Checkpoints.ModelReplicas Models { get; } = models;
    public Storage.Artifacts.IArtifactStore Store { get; } = store;
    public WorkerCache Cache { get; } = cache ?? WorkerCache.Shared;

    /// <summary>The job whose shard runs (empty outside a worker): what a shard that coordinates with its job's other shards names its group by.</summary>
    public string JobId { get; private init; } = "";

    /// <summary>This context for a shard of <paramref name="jobId"/>.</summary>
    public ShardContext ForJob(string jobId) => new(Worker, Device, Threads, Artifacts, Models, Store, Cache) { JobId = jobId };

    public string LocalFolder(string key, CancellationToken cancellationToken) =>
        Artifacts.LocalFolderAsync(key, cancellationToken).GetAwaiter().GetResult();
}

/// <summary>The job kinds this process knows, by name.</summary>
public sealed class JobKindCatalog(IEnumerable<IJobKind> kinds)
{
    private readonly Dictionary<string, IJobKind> _kinds = kinds.ToDictionary(k => k.Name, StringComparer.Ordinal);

    public IJobKind Get(string name) => _kinds.TryGetValue(name, out var kind)
        ? kind
        : throw new UserInputException($"Unknown job kind '{name}'; this build knows: {string.Join(", ", _kinds.Keys.Order(StringComparer.Ordinal))}.");

    /// <summary>The registered instance of <typeparamref name="TKind"/>.</summary>
    public TKind Get<TKind>() where TKind : IJobKind => _kinds.Values.OfType<TKind>().Single();
}
