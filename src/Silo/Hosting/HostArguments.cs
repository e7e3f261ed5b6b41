namespace Babel.Silo;

/// <summary>Host settings every Babel process passes to its .NET host builder.</summary>
public static class HostArguments
{
    /// <summary>
    /// Turns off the default reload of <c>appsettings.json</c> on change. That reload watches the content root (the current
    /// folder) recursively, so every folder a job creates under it — e.g. one per shard result in <c>./.babel</c> — costs an
    /// inotify watch and its memory for the life of the process. Babel reads its settings once, at start.
    /// </summary>
    public const string NoConfigurationReload = "--hostBuilder:reloadConfigOnChange=false";

    /// <summary><paramref name="args"/> with <see cref="NoConfigurationReload"/> added.</summary>
    public static string[] With(string[] args) => [.. args, NoConfigurationReload];
}
