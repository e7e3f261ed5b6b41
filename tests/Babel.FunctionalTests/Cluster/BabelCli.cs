using System.Diagnostics;

namespace Babel.FunctionalTests.Cluster;

/// <summary>What one <c>babel</c> run printed and how it ended.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public override string ToString() => $"exit code {ExitCode} after {Elapsed.TotalSeconds:F1} s\nstdout:\n{ChildProcess.Tail(Stdout)}\nstderr:\n{ChildProcess.Tail(Stderr)}";
}

/// <summary>Runs the <c>babel</c> CLI as a process, with the environment a user would set, in a working folder of its own.</summary>
public sealed class BabelCli(IReadOnlyDictionary<string, string?> environment, string workingDirectory)
{
    /// <summary>The CLI outside any cluster: no storage connection string, no cluster id.</summary>
    public static BabelCli Standalone(string workingDirectory) => new(new Dictionary<string, string?>
    {
        ["BABEL_STORAGE_CONNECTION_STRING"] = null,
        ["Babel__Cluster__ClusterId"] = null,
    }, workingDirectory);

    /// <summary>The CLI pointed at a cluster the way its users do: the storage connection string and the cluster id in the environment.</summary>
    public static BabelCli ForCluster(string connectionString, string clusterId, string workingDirectory) => new(new Dictionary<string, string?>
    {
        ["BABEL_STORAGE_CONNECTION_STRING"] = connectionString,
        ["Babel__Cluster__ClusterId"] = clusterId,
    }, workingDirectory);

    /// <summary>Runs to the end; a run that outlives <paramref name="timeout"/> is killed and reported as a timeout.</summary>
    public async Task<CliResult> RunAsync(TimeSpan timeout, params string[] arguments)
    {
        var elapsed = Stopwatch.StartNew();
        using var process = ChildProcess.Start(BuildOutputs.CliDll, arguments, environment, workingDirectory, keepWholeOutput: true);
        if (!await process.WaitForExitAsync(timeout))
        {
            process.Kill();
            await process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            throw new TimeoutException($"'babel {string.Join(' ', arguments)}' did not finish within {timeout.TotalSeconds:F0} s.\nstdout:\n{ChildProcess.Tail(process.Stdout)}\nstderr:\n{ChildProcess.Tail(process.Stderr)}");
        }
        return new CliResult(process.ExitCode, process.Stdout, process.Stderr, elapsed.Elapsed);
    }
}
