using System.Diagnostics;
using System.Globalization;
using Babel.Silo;

namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// A <c>Babel.Silo</c> process in cluster mode on its own free ports, configured only through environment variables as a
/// user (or Kubernetes) configures it. <see cref="Kill"/> is SIGKILL; disposal kills it too.
/// </summary>
public sealed class SiloProcess : IDisposable
{
    private static readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly ChildProcess _process;
    private readonly string _cacheFolder;

    private SiloProcess(string name, ChildProcess process, int siloPort, int gatewayPort, int httpPort, string cacheFolder)
    {
        Name = name;
        _process = process;
        SiloPort = siloPort;
        GatewayPort = gatewayPort;
        HttpPort = httpPort;
        _cacheFolder = cacheFolder;
    }

    public string Name { get; }

    /// <summary>The silo's worker cache folder (<c>Babel__Worker__CacheFolder</c>), where jobs keep local working state.</summary>
    public string CacheFolder => _cacheFolder;
    public int SiloPort { get; }
    public int GatewayPort { get; }
    public int HttpPort { get; }
    public Uri BaseAddress => new($"http://127.0.0.1:{HttpPort}");
    public bool HasExited => _process.HasExited;

    /// <summary>The prefix of this silo's device worker ids (<c>127.0.0.1:PORT@GENERATION/</c>); the generation differs per start.</summary>
    public string WorkerPrefix => $"127.0.0.1:{SiloPort}@";

    /// <summary>
    /// Starts a silo with <paramref name="cpuSlots"/> device workers in cluster <paramref name="clusterId"/> on
    /// <paramref name="connectionString"/> and waits until it is ready (<see cref="WaitReadyAsync"/>); <paramref name="settings"/>
    /// adds or replaces environment variables (e.g. <c>Babel__Tls__*</c>). A silo that found one of its ports taken by another
    /// process between the draw and its own bind is started again on new ports.
    /// </summary>
    public static async Task<SiloProcess> StartAsync(string name, string clusterId, string connectionString, TimeSpan readyTimeout, int cpuSlots = 1, IReadOnlyDictionary<string, string?>? settings = null)
    {
        const int attempts = 3;
        for (var attempt = 1; ; attempt++)
        {
            var silo = Start(name, clusterId, connectionString, cpuSlots, settings);
            try
            {
                await silo.WaitReadyAsync(readyTimeout);
                return silo;
            }
            catch (InvalidOperationException) when (attempt < attempts && silo.OutputTail().Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                silo.Dispose();
            }
            catch
            {
                silo.Dispose();
                throw;
            }
        }
    }

    private static SiloProcess Start(string name, string clusterId, string connectionString, int cpuSlots, IReadOnlyDictionary<string, string?>? settings)
    {
        var ports = LoopbackPorts.Free(3);
        var cache = Directory.CreateTempSubdirectory($"babel-silo-{name}-").FullName;
        var environment = new Dictionary<string, string?>
        {
            ["Babel__Cluster__Mode"] = "Cluster",
            ["Babel__Cluster__ClusterId"] = clusterId,
            ["Babel__Cluster__SiloPort"] = ports[0].ToString(CultureInfo.InvariantCulture),
            ["Babel__Cluster__GatewayPort"] = ports[1].ToString(CultureInfo.InvariantCulture),
            ["Babel__Cluster__AdvertisedAddress"] = "127.0.0.1",
            // Evict a dead silo in about a second, not Orleans' production default of about 12 s.
            ["Babel__Cluster__ProbeTimeout"] = "00:00:01",
            ["Babel__Cluster__NumMissedProbesLimit"] = "2",
            ["Babel__Worker__CpuSlots"] = cpuSlots.ToString(CultureInfo.InvariantCulture),
            ["Babel__Worker__CacheFolder"] = cache,
            ["Babel__Http__Urls"] = $"http://127.0.0.1:{ports[2]}",
            ["BABEL_STORAGE_CONNECTION_STRING"] = connectionString,
            ["ASPNETCORE_URLS"] = null,
            ["DOTNET_gcServer"] = "0",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
            environment[key] = value;
        var process = ChildProcess.Start(BuildOutputs.SiloDll, [], environment, cache, keepWholeOutput: false);
        return new SiloProcess(name, process, ports[0], ports[1], ports[2], cache);
    }

    /// <summary>Waits until <c>/health/ready</c> answers 200 (the silo is Active in the cluster); throws with the silo's output after <paramref name="timeout"/>.</summary>
    public async Task WaitReadyAsync(TimeSpan timeout)
    {
        var elapsed = Stopwatch.StartNew();
        while (elapsed.Elapsed < timeout)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"Silo {Name} exited with code {_process.ExitCode} while starting. Its output:\n{OutputTail()}");
            try
            {
                using var response = await _http.GetAsync(new Uri(BaseAddress, "/health/ready"));
                if (response.IsSuccessStatusCode) return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet.
            }
            await Task.Delay(200);
        }
        throw new TimeoutException($"Silo {Name} was not ready within {timeout.TotalSeconds:F0} s. Its output:\n{OutputTail()}");
    }

    /// <summary>The Prometheus text of <c>/metrics</c>.</summary>
    public async Task<string> ScrapeMetricsAsync() => await _http.GetStringAsync(new Uri(BaseAddress, "/metrics"));

    /// <summary>The sum of a counter's samples (all label sets, or those of job kind <paramref name="kind"/>) in <paramref name="metrics"/>; 0 when absent.</summary>
    public static double Counter(string metrics, string name, string? kind = null) =>
        metrics.Split('\n')
            .Where(line => line.StartsWith(name, StringComparison.Ordinal) && line.Length > name.Length && (line[name.Length] == '{' || line[name.Length] == ' '))
            .Where(line => kind is null || line.Contains($"kind=\"{kind}\"", StringComparison.Ordinal))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));

    /// <summary>The process's resident memory now (<c>VmRSS</c> of <c>/proc/PID/status</c>), in bytes.</summary>
    public long ResidentBytes()
    {
        var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>SIGKILL: the silo gets no chance to leave the cluster or flush anything.</summary>
    public void Kill() => _process.Kill();

    public string OutputTail() => ChildProcess.Tail(_process.Stdout + _process.Stderr);

    public void Dispose()
    {
        _process.Dispose();
        try
        {
            Directory.Delete(_cacheFolder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
