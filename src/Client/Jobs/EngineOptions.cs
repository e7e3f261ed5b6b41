using System.CommandLine;

namespace Babel.Client.Jobs;

/// <summary>The options every command that talks to the engine shares: where the engine runs.</summary>
internal sealed class EngineOptions
{
    /// <summary>The environment variable that sets the default of <c>--store</c>.</summary>
    public const string StoreVariable = "BABEL_STORE";

    public Option<bool> Cluster { get; } = new("--cluster")
    {
        Description = "Run on the cluster (Azure Table membership and Azure Blob storage from BABEL_STORAGE_CONNECTION_STRING) instead of an embedded silo.",
    };

    public Option<string> Store { get; } = new("--store")
    {
        Description = $"Embedded mode's folder for job state, artifacts and the worker cache (default: ${StoreVariable}, else .babel).",
        DefaultValueFactory = _ => DefaultStore,
    };

    /// <summary><c>$BABEL_STORE</c>, else <c>.babel</c>.</summary>
    public static string DefaultStore => Environment.GetEnvironmentVariable(StoreVariable) is { Length: > 0 } store ? store : ".babel";

    public void AddTo(Command command)
    {
        command.Options.Add(Cluster);
        command.Options.Add(Store);
    }

    public Task<EngineConnection> OpenAsync(ParseResult parse, int workers, CancellationToken cancellationToken) =>
        EngineConnection.OpenAsync(parse.GetValue(Cluster), parse.GetValue(Store)!, workers, cancellationToken);
}
