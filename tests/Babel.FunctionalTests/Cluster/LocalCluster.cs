using Babel.FunctionalTests.Infrastructure;

namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// One test's cluster: its own Azurite (so no job, registry or membership state leaks between tests), its own cluster id,
/// and silo processes on free ports. Disposal kills the silos before Azurite.
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private readonly List<SiloProcess> _silos = [];
    private readonly IReadOnlyDictionary<string, string?>? _siloSettings;

    private LocalCluster(Azurite azurite, string workingDirectory, IReadOnlyDictionary<string, string?>? siloSettings)
    {
        Azurite = azurite;
        WorkingDirectory = workingDirectory;
        _siloSettings = siloSettings;
    }

    public Azurite Azurite { get; }
    public string ClusterId { get; } = $"test-{Guid.NewGuid():N}";
    public string WorkingDirectory { get; }
    /// <summary>Every silo started in this cluster, killed ones included, in the order they started.</summary>
    public IReadOnlyList<SiloProcess> Silos => _silos;
    public BabelCli Cli => BabelCli.ForCluster(Azurite.ConnectionString, ClusterId, WorkingDirectory);

    /// <summary>
    /// Starts Azurite and <paramref name="silos"/> silos with one CPU worker each, and waits until every silo is ready;
    /// <paramref name="siloSettings"/> adds environment variables to every silo.
    /// </summary>
    public static async Task<LocalCluster> StartAsync(int silos, IReadOnlyDictionary<string, string?>? siloSettings = null)
    {
        var cluster = new LocalCluster(await Azurite.StartNewAsync(), Directory.CreateTempSubdirectory("babel-cluster-").FullName, siloSettings);
        try
        {
            var starting = Enumerable.Range(0, silos)
                .Select(i => cluster.StartSiloAsync($"silo{i}"))
                .ToArray();
            try
            {
                await Task.WhenAll(starting);
            }
            finally
            {
                cluster._silos.AddRange(starting.Where(s => s.IsCompletedSuccessfully).Select(s => s.Result));
            }
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Starts one more silo, as Kubernetes replaces a pod, with the settings of the first ones, and waits until it is ready.
    /// It belongs to the cluster: it stays up until the cluster is disposed, after the test's last command.
    /// </summary>
    public async Task<SiloProcess> JoinSiloAsync(string name)
    {
        var silo = await StartSiloAsync(name);
        _silos.Add(silo);
        return silo;
    }

    /// <summary>A silo of this cluster with the cluster's silo settings, ready; the caller adds it to <see cref="Silos"/>.</summary>
    private Task<SiloProcess> StartSiloAsync(string name) => SiloProcess.StartAsync(name, ClusterId, Azurite.ConnectionString, ReadyTimeout, settings: _siloSettings);

    /// <summary>
    /// Shards completed so far in the cluster: <c>babel_shards_completed_total</c> (of job kind <paramref name="kind"/> when
    /// given) summed over the live silos (it is counted where the job grain lives).
    /// </summary>
    public async Task<double> ShardsCompletedAsync(string? kind = null)
    {
        var total = 0.0;
        foreach (var silo in _silos.Where(s => !s.HasExited))
        {
            try
            {
                total += SiloProcess.Counter(await silo.ScrapeMetricsAsync(), "babel_shards_completed_total", kind);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // A silo being killed.
            }
        }
        return total;
    }

    /// <summary>
    /// While <paramref name="run"/> goes on, polls every silo with <paramref name="probe"/> until one reports what the test
    /// waits for, then kills that silo (SIGKILL) and returns it with the value found; fails if the run ends first or
    /// nothing is found within <paramref name="timeout"/> (<paramref name="waitingFor"/> says what, in the message).
    /// </summary>
    public async Task<(SiloProcess Silo, T Found)> KillWhenAsync<T>(Task<CliResult> run, Func<SiloProcess, (bool Found, T Value)> probe, TimeSpan timeout, string waitingFor)
    {
        var elapsed = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (run.IsCompleted) Xunit.Assert.Fail($"The run ended before {waitingFor}; make it longer.\n{await run}");
            Xunit.Assert.True(elapsed.Elapsed < timeout, $"Not in time: {waitingFor}.");
            foreach (var silo in _silos.Where(s => !s.HasExited))
            {
                if (probe(silo) is { Found: true, Value: var value })
                {
                    silo.Kill();
                    return (silo, value);
                }
            }
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var silo in _silos) silo.Dispose();
        await Azurite.DisposeAsync();
        try
        {
            Directory.Delete(WorkingDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
