using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Babel.Silo;
using Xunit;

namespace Babel.FunctionalTests.Infrastructure;

/// <summary>
/// The real Azure Storage emulator (npm <c>azurite</c> <see cref="Version"/>) as a child process bound to
/// 127.0.0.1 on free ports. It is installed into <c>$BABEL_CACHE/azurite-VERSION</c> (default
/// <c>~/.cache/babel</c>) on first use — the same place <c>.ci/run</c> installs it.
/// </summary>
/// <remarks>
/// Data lives in a temporary <c>--location</c> folder on disk rather than <c>--inMemoryPersistence</c>, so that
/// <see cref="StopAsync"/> then <see cref="StartAsync"/> simulates a storage outage that keeps the data, as a
/// real outage does. <see cref="StopAsync"/> sends SIGTERM, on which Azurite saves its metadata (it otherwise
/// saves every 5 s) and exits; disposal kills the process tree and deletes the folder.
/// </remarks>
public sealed class Azurite : IAsyncDisposable
{
    /// <summary>3.35.0 is the last Azurite that runs on Node 20 (3.37+ needs Node 22).</summary>
    public const string Version = "3.35.0";
    public const string AccountName = "devstoreaccount1";
    /// <summary>Azurite's well-known development account key (public, documented by Microsoft).</summary>
    public const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private static readonly TimeSpan _startTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan _stopTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan _installTimeout = TimeSpan.FromMinutes(5);
    private const int OutputTailLength = 4000;
    private const int SigTerm = 15;
    private const int SigStop = 19;
    private const int SigCont = 18;

    private readonly string _script;
    private readonly string _location;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private Azurite(string script, string location, int blobPort, int queuePort, int tablePort)
    {
        _script = script;
        _location = location;
        BlobPort = blobPort;
        QueuePort = queuePort;
        TablePort = tablePort;
    }

    public int BlobPort { get; }
    public int QueuePort { get; }
    public int TablePort { get; }
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>A connection string for the well-known account with the blob, queue and table endpoints of this instance.</summary>
    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName={AccountName};AccountKey={AccountKey};" +
        $"BlobEndpoint=http://127.0.0.1:{BlobPort}/{AccountName};" +
        $"QueueEndpoint=http://127.0.0.1:{QueuePort}/{AccountName};" +
        $"TableEndpoint=http://127.0.0.1:{TablePort}/{AccountName};";

    /// <summary>The command-line flags Azurite is started with (after the script path).</summary>
    public IReadOnlyList<string> Arguments =>
    [
        "--blobHost", "127.0.0.1", "--blobPort", BlobPort.ToString(),
        "--queueHost", "127.0.0.1", "--queuePort", QueuePort.ToString(),
        "--tableHost", "127.0.0.1", "--tablePort", TablePort.ToString(),
        "--location", _location,
        // Azure.Storage.Blobs 12.27+ speaks a newer API version than Azurite 3.35 knows.
        "--skipApiVersionCheck",
        "--disableTelemetry",
        // No access log: nobody reads it, and an undrained pipe would stall the emulator.
        "--silent",
    ];

    /// <summary>Installs Azurite if needed and starts it on free ports with an empty data folder.</summary>
    public static async Task<Azurite> StartNewAsync(CancellationToken cancellationToken = default)
    {
        var script = await InstallAsync(cancellationToken).ConfigureAwait(false);
        const int attempts = 3;
        for (var attempt = 1; ; attempt++)
        {
            // Another process may bind a port between the check and Azurite's bind, so retry.
            var ports = LoopbackPorts.Free(3);
            var azurite = new Azurite(script, Directory.CreateTempSubdirectory("babel-azurite-").FullName, ports[0], ports[1], ports[2]);
            try
            {
                await azurite.StartAsync(cancellationToken).ConfigureAwait(false);
                return azurite;
            }
            catch (InvalidOperationException) when (attempt < attempts && azurite.OutputTail().Contains("EADDRINUSE", StringComparison.Ordinal))
            {
                await azurite.DisposeAsync().ConfigureAwait(false);
            }
            catch
            {
                await azurite.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>The path of <c>azurite.js</c> in the cache, running <c>npm install</c> into the cache first when it is missing.</summary>
    public static async Task<string> InstallAsync(CancellationToken cancellationToken = default)
    {
        var cache = Environment.GetEnvironmentVariable("BABEL_CACHE") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "babel");
        var prefix = Path.Combine(cache, $"azurite-{Version}");
        var script = Path.Combine(prefix, "node_modules", "azurite", "dist", "src", "azurite.js");
        if (File.Exists(script)) return script;

        Directory.CreateDirectory(cache);
        // Test assemblies run in parallel processes: one installs while the others wait on the lock file.
        await using var installLock = await LockAsync(Path.Combine(cache, $"azurite-{Version}.lock"), cancellationToken).ConfigureAwait(false);
        if (File.Exists(script)) return script;
        var (exitCode, output) = await RunAsync("npm", ["install", "--prefix", prefix, $"azurite@{Version}", "--no-audit", "--no-fund"], _installTimeout, cancellationToken).ConfigureAwait(false);
        if (exitCode != 0 || !File.Exists(script))
            throw new InvalidOperationException($"Could not install Azurite {Version} with 'npm install --prefix {prefix} azurite@{Version}' (exit code {exitCode}); check that Node.js and npm are installed and the npm registry is reachable. npm said:\n{Tail(output)}");
        return script;
    }

    /// <summary>Starts (or restarts) Azurite on this instance's ports and data folder, and waits until every port accepts connections.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (IsRunning) return;
        lock (_output) _output.Clear();
        var start = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _location,
        };
        start.ArgumentList.Add(_script);
        foreach (var argument in Arguments) start.ArgumentList.Add(argument);
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            throw new InvalidOperationException("Could not start 'node' for Azurite; install Node.js 20 or later and put it on PATH.", e);
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false); // flushes the output readers
                throw new InvalidOperationException($"Azurite {Version} exited with code {process.ExitCode} while starting on ports {BlobPort}/{QueuePort}/{TablePort}. Its output:\n{OutputTail()}");
            }
            if (await AcceptsAsync(BlobPort).ConfigureAwait(false) && await AcceptsAsync(QueuePort).ConfigureAwait(false) && await AcceptsAsync(TablePort).ConfigureAwait(false))
                return;
            if (deadline.Elapsed > _startTimeout)
            {
                KillTree(process);
                throw new InvalidOperationException($"Azurite {Version} did not accept connections on ports {BlobPort}/{QueuePort}/{TablePort} within {_startTimeout.TotalSeconds:0} s. Its output:\n{OutputTail()}");
            }
            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stops Azurite as a service outage would: SIGTERM (it saves its data and exits), SIGKILL if it has not exited within 10 s.</summary>
    public async Task StopAsync()
    {
        if (_process is not { } process) return;
        _process = null;
        if (!process.HasExited)
        {
            _ = Kill(process.Id, SigTerm);
            using var timeout = new CancellationTokenSource(_stopTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                KillTree(process);
                await process.WaitForExitAsync().ConfigureAwait(false);
            }
        }
        process.Dispose();
    }

    /// <summary>
    /// Freezes Azurite for <paramref name="duration"/> (SIGSTOP, then SIGCONT): connections stay open and requests hang
    /// instead of being refused, the harder kind of storage outage.
    /// </summary>
    public async Task PauseAsync(TimeSpan duration)
    {
        if (_process is not { HasExited: false } process) return;
        _ = Kill(process.Id, SigStop);
        try
        {
            await Task.Delay(duration).ConfigureAwait(false);
        }
        finally
        {
            _ = Kill(process.Id, SigCont);
        }
    }

    /// <summary>The last few thousand characters Azurite wrote to stdout and stderr since it was last started.</summary>
    public string OutputTail()
    {
        lock (_output) return Tail(_output.ToString());
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { } process)
        {
            _process = null;
            KillTree(process);
            await process.WaitForExitAsync().ConfigureAwait(false);
            process.Dispose();
        }
        try
        {
            if (Directory.Exists(_location)) Directory.Delete(_location, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            _output.AppendLine(line);
            if (_output.Length > 4 * OutputTailLength) _output.Remove(0, _output.Length - OutputTailLength);
        }
    }

    private static string Tail(string text) => text.Length <= OutputTailLength ? text : text[^OutputTailLength..];

    private static void KillTree(Process process)
    {
        try
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    private static async Task<bool> AcceptsAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }


    private static async Task<FileStream> LockAsync(string path, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (IOException) when (deadline.Elapsed < _installTimeout)
            {
                await Task.Delay(250, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string fileName, IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{fileName}'.");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            KillTree(process);
            throw new TimeoutException($"'{fileName} {string.Join(' ', start.ArgumentList)}' did not finish within {timeout.TotalMinutes:0} minutes.");
        }
        return (process.ExitCode, await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false));
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}

/// <summary>One Azurite per test collection: <c>[Collection(AzuriteCollection.Name)]</c> on a test class, <c>AzuriteFixture</c> in its constructor.</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    private Azurite? _azurite;

    public Azurite Azurite => _azurite ?? throw new InvalidOperationException("Azurite has not been started.");

    public string ConnectionString => Azurite.ConnectionString;

    public async Task InitializeAsync() => _azurite = await Azurite.StartNewAsync();

    public async Task DisposeAsync()
    {
        if (_azurite is not null) await _azurite.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "Azurite";
}
