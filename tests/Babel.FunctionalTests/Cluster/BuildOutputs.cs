namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// Where the silo and CLI this test assembly was built with live: the project references build them first (without
/// copying them here), in the same Configuration, under the repository root (the folder holding Distributed.sln).
/// </summary>
public static class BuildOutputs
{
    private const string Solution = "Distributed.sln";
    private const string TargetFramework = "net10.0";
    private const string RuntimeIdentifier = "linux-x64";

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>Debug or Release: the folder after <c>bin</c> in this test assembly's path.</summary>
    public static string Configuration { get; } = FindConfiguration();

    public static string SiloDll => Existing(Path.Combine(RepositoryRoot, "src", "Silo", "bin", Configuration, TargetFramework, RuntimeIdentifier, "Babel.Silo.dll"));

    public static string CliDll => Existing(Path.Combine(RepositoryRoot, "src", "Client", "bin", Configuration, TargetFramework, RuntimeIdentifier, "babel.dll"));

    /// <summary>The <c>dotnet</c> host running these tests, so the processes use the same runtime.</summary>
    public static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host
        : Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path
        : "dotnet";

    private static string FindRepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, Solution))) return folder.FullName;
        }
        throw new InvalidOperationException($"No folder above {AppContext.BaseDirectory} holds {Solution}; run the functional tests from the repository's build output.");
    }

    private static string FindConfiguration()
    {
        var parts = Path.GetFullPath(AppContext.BaseDirectory).Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var bin = Array.LastIndexOf(parts, "bin");
        if (bin < 0 || bin + 1 >= parts.Length)
            throw new InvalidOperationException($"Cannot tell the build configuration from {AppContext.BaseDirectory} (expected .../bin/CONFIGURATION/...).");
        return parts[bin + 1];
    }

    private static string Existing(string path) => File.Exists(path)
        ? path
        : throw new InvalidOperationException($"{path} does not exist; build the solution with -c {Configuration} (the test project's references build it).");
}
