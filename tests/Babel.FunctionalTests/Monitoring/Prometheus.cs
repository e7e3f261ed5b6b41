using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Babel.Silo;

namespace Babel.FunctionalTests.Monitoring;

/// <summary>
/// A real Prometheus server (Debian package <c>prometheus</c>, which <c>.ci/run</c> installs) as a child process on a free
/// 127.0.0.1 port, with a configuration and a TSDB folder of its own; disposal kills it and deletes the folder. The package's
/// own service, if the system started one, is not used: it listens elsewhere and scrapes other targets.
/// </summary>
public sealed class Prometheus : IAsyncDisposable
{
    private static readonly TimeSpan _startTimeout = TimeSpan.FromSeconds(30);
    private static readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private const int OutputTailLength = 4000;
    private readonly StringBuilder _output = new();
    private readonly Process _process;

    private Prometheus(Process process, string folder, int port)
    {
        _process = process;
        Folder = folder;
        Port = port;
    }

    public string Folder { get; }
    public int Port { get; }
    public Uri BaseAddress => new($"http://127.0.0.1:{Port}");

    /// <summary>The path of <paramref name="tool"/> (<c>prometheus</c> or <c>promtool</c>) on PATH; a clear error, not a skip, when it is missing.</summary>
    public static string Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/bin")
            .Select(dir => Path.Combine(dir, tool))
            .FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException(
            $"'{tool}' is not installed; install Debian's prometheus package (apt-get install -y prometheus), as .ci/run does, then rerun the tests.");

    /// <summary>Writes <paramref name="configuration"/> (and <paramref name="files"/> beside it), starts Prometheus on a free port and waits until it is ready.</summary>
    public static async Task<Prometheus> StartAsync(string configuration, IReadOnlyDictionary<string, string> files, CancellationToken cancellationToken)
    {
        var binary = Find("prometheus");
        var folder = Directory.CreateTempSubdirectory("babel-prometheus-").FullName;
        foreach (var (name, text) in files) await File.WriteAllTextAsync(Path.Combine(folder, name), text, cancellationToken);
        var configFile = Path.Combine(folder, "prometheus.yml");
        await File.WriteAllTextAsync(configFile, configuration, cancellationToken);
        var port = LoopbackPorts.Free();
        var start = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = folder,
        };
        foreach (var argument in new[]
        {
            $"--config.file={configFile}",
            $"--storage.tsdb.path={Path.Combine(folder, "data")}",
            $"--web.listen-address=127.0.0.1:{port}",
        })
        {
            start.ArgumentList.Add(argument);
        }
        var process = new Process { StartInfo = start };
        var prometheus = new Prometheus(process, folder, port);
        process.OutputDataReceived += (_, e) => prometheus.Append(e.Data);
        process.ErrorDataReceived += (_, e) => prometheus.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var elapsed = Stopwatch.StartNew();
            while (true)
            {
                if (process.HasExited)
                    throw new InvalidOperationException($"Prometheus exited with code {process.ExitCode} while starting. Its output:\n{prometheus.OutputTail()}");
                if (await prometheus.IsReadyAsync()) return prometheus;
                if (elapsed.Elapsed > _startTimeout)
                    throw new InvalidOperationException($"Prometheus was not ready on port {port} within {_startTimeout.TotalSeconds:0} s. Its output:\n{prometheus.OutputTail()}");
                await Task.Delay(100, cancellationToken);
            }
        }
        catch
        {
            await prometheus.DisposeAsync();
            throw;
        }
    }

    /// <summary>GET on the HTTP API (<c>/api/v1/...</c>); the <c>data</c> of a <c>success</c> answer.</summary>
    public async Task<JsonNode> ApiAsync(string pathAndQuery, CancellationToken cancellationToken)
    {
        var answer = JsonNode.Parse(await _http.GetStringAsync(new Uri(BaseAddress, pathAndQuery), cancellationToken))!;
        if ((string?)answer["status"] != "success")
            throw new InvalidOperationException($"Prometheus answered {answer.ToJsonString()} to {pathAndQuery}.");
        return answer["data"]!;
    }

    /// <summary>An instant query's result vector.</summary>
    public async Task<JsonArray> QueryAsync(string promQl, CancellationToken cancellationToken) =>
        (await ApiAsync("/api/v1/query?query=" + Uri.EscapeDataString(promQl), cancellationToken))["result"]!.AsArray();

    /// <summary>The value of a one-sample query result, or null when the result is empty.</summary>
    public static double? Scalar(JsonArray result) =>
        result.Count == 0 ? null : double.Parse((string)result[0]!["value"]![1]!, CultureInfo.InvariantCulture);

    /// <summary>Runs <c>promtool ARGUMENTS</c> to the end: exit code and output.</summary>
    public static async Task<(int ExitCode, string Output)> PromtoolAsync(CancellationToken cancellationToken, params string[] arguments)
    {
        var start = new ProcessStartInfo(Find("promtool")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        return (process.ExitCode, await stdout + await stderr);
    }

    public string OutputTail()
    {
        lock (_output) return _output.Length <= OutputTailLength ? _output.ToString() : _output.ToString()[^OutputTailLength..];
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        catch (InvalidOperationException)
        {
            // Never started or already gone.
        }
        _process.Dispose();
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task<bool> IsReadyAsync()
    {
        try
        {
            using var response = await _http.GetAsync(new Uri(BaseAddress, "/-/ready"));
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
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

}
