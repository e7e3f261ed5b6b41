using System.CommandLine;

namespace Babel.Client.Commands;

/// <summary>The options every job command shares: where the engine runs.</summary>
internal sealed class EngineOptions
{
    public Option<bool> Cluster { get; } = new("--cluster")
    {
        Description = "Run on the cluster (Azure Table membership and Azure Blob storage from BABEL_STORAGE_CONNECTION_STRING) instead of an embedded silo.",
    };

    public Option<string> Store { get; } = new("--store")
    {
        Description = "Embedded mode's folder for job state, artifacts and the worker cache.",
        DefaultValueFactory = _ => ".babel",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Cluster);
        command.Options.Add(Store);
    }

    public Task<EngineConnection> OpenAsync(ParseResult parse, int workers, CancellationToken cancellationToken) =>
        EngineConnection.OpenAsync(parse.GetValue(Cluster), parse.GetValue(Store)!, workers, cancellationToken);
}
