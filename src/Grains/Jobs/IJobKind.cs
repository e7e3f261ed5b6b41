using System.Collections.Immutable;
using Babel.Contracts;
using Babel.Grains.Workers;

namespace Babel.Grains.Jobs;

/// <summary>
/// One type of job on the engine. The client validates parameters and plans shards with it; device workers run
/// shards with it. <see cref="RunShard"/> must be deterministic for a shard, so results do not depend on which
/// worker ran it or how often, and its totals must be exact integers, so they sum in any order.
/// </summary>
public interface IJobKind
{
    string Name { get; }

    /// <summary>Validates <paramref name="parameters"/> (clear <see cref="Storage.UserInputException"/> otherwise) and returns the deterministic plan.</summary>
    Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken);

    /// <summary>Runs one shard on the calling (dedicated) thread.</summary>
    ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken);
}

/// <summary>What a shard produced: the document written to the artifact store, and its exact totals.</summary>
public sealed record ShardResult(byte[] Content, ImmutableSortedDictionary<string, long> Totals);

/// <summary>Materialises artifact-store folders (models, corpora) as local folders.</summary>
public interface IArtifactResolver
{
    Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken);
}

/// <summary>What a worker gives a shard: its identity, resolved artifacts and its cache of loaded models.</summary>
public sealed class ShardContext(string worker, string device, int threads, IArtifactResolver artifacts, ModelReplicas models)
{
    public string Worker { get; } = worker;
    public string Device { get; } = device;
    public int Threads { get; } = threads;
    public IArtifactResolver Artifacts { get; } = artifacts;
    public ModelReplicas Models { get; } = models;

    public string LocalFolder(string key, CancellationToken cancellationToken) =>
        Artifacts.LocalFolderAsync(key, cancellationToken).GetAwaiter().GetResult();
}

/// <summary>The job kinds this process knows, by name.</summary>
public sealed class JobKindCatalog(IEnumerable<IJobKind> kinds)
{
    private readonly Dictionary<string, IJobKind> _kinds = kinds.ToDictionary(k => k.Name, StringComparer.Ordinal);

    public IJobKind Get(string name) => _kinds.TryGetValue(name, out var kind)
        ? kind
        : throw new Storage.UserInputException($"Unknown job kind '{name}'; this build knows: {string.Join(", ", _kinds.Keys.Order(StringComparer.Ordinal))}.");
}
