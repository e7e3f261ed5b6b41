using System.Diagnostics;
using System.Globalization;
using Babel.Silo;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>Silo processes of this machine that benchmarks start beside their own process (<c>babel silo</c>), and waiting for them to join.</summary>
internal static class BenchmarkSilos
{
    /// <summary>Starts <c>babel silo</c> with fresh loopback ports and <paramref name="settings"/> (configuration as environment variables).</summary>
    public static Process Start(IReadOnlyDictionary<string, string> settings)
    {
        var self = Environment.GetCommandLineArgs()[0];
        var host = Environment.ProcessPath!;
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Under 'dotnet babel.dll' the host is dotnet and the CLI is its first argument.
        if (!string.Equals(Path.GetFileNameWithoutExtension(host), "babel", StringComparison.Ordinal)) start.ArgumentList.Add(self);
        start.ArgumentList.Add("silo");
        var environment = start.Environment;
        environment["Babel__Cluster__SiloPort"] = LoopbackPorts.Free().ToString(CultureInfo.InvariantCulture);
        environment["Babel__Cluster__GatewayPort"] = LoopbackPorts.Free().ToString(CultureInfo.InvariantCulture);
        environment["Babel__Http__Urls"] = $"http://127.0.0.1:{LoopbackPorts.Free().ToString(CultureInfo.InvariantCulture)}";
        foreach (var (name, value) in settings) environment[name] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start a silo process.");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Waits until <paramref name="silos"/> silos are active (60 s at most), then a moment for their workers to start pulling.</summary>
    public static async Task WaitForHostsAsync(IGrainFactory grains, int silos, IReadOnlyList<Process> children, CancellationToken cancellationToken)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                if ((await management.GetHosts(onlyActive: true)).Count >= silos) break;
            }
            catch (OrleansException)
            {
                // A cluster client may connect before any silo is active.
            }
            if (children.Any(c => c.HasExited)) throw new UserInputException("A benchmark silo process exited during start-up.");
            if (DateTime.UtcNow > deadline) throw new UserInputException($"Only some of the {silos} benchmark silos joined within 60 s.");
            await Task.Delay(200, cancellationToken);
        }
        await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
    }

    /// <summary>Kills the silo processes and waits for them to exit.</summary>
    public static async Task StopAsync(IEnumerable<Process> children)
    {
        foreach (var child in children)
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync(CancellationToken.None);
            child.Dispose();
        }
    }
}
