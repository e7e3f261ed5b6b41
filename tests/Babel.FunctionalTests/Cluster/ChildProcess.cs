using System.Diagnostics;
using System.Text;

namespace Babel.FunctionalTests.Cluster;

/// <summary>A started <c>dotnet DLL ...</c> child process whose stdout and stderr are captured; disposal kills its process tree.</summary>
internal sealed class ChildProcess : IDisposable
{
    private const int TailLength = 6000;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Process _process;
    private readonly bool _keepWholeOutput;

    private ChildProcess(Process process, bool keepWholeOutput)
    {
        _process = process;
        _keepWholeOutput = keepWholeOutput;
    }

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Starts <c>dotnet DLL ARGUMENTS</c>; <paramref name="keepWholeOutput"/> keeps everything (a CLI's result), otherwise only the tail (a silo's log).</summary>
    public static ChildProcess Start(string dll, IEnumerable<string> arguments, IReadOnlyDictionary<string, string?> environment, string workingDirectory, bool keepWholeOutput)
    {
        var start = new ProcessStartInfo(BuildOutputs.DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        start.ArgumentList.Add(dll);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        var process = new Process { StartInfo = start };
        var child = new ChildProcess(process, keepWholeOutput);
        process.OutputDataReceived += (_, e) => child.Append(child._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(child._stderr, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public string Stdout
    {
        get
        {
            lock (_stdout) return _stdout.ToString();
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    /// <summary>Waits for the exit (and the end of its output); false when <paramref name="timeout"/> passed first.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var limit = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(limit.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL to the process and its children: no shutdown code runs, as in a machine or container crash.</summary>
    public void Kill()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    public void Dispose()
    {
        Kill();
        _process.WaitForExit(10_000);
        _process.Dispose();
    }

    private void Append(StringBuilder output, string? line)
    {
        if (line is null) return;
        lock (output)
        {
            output.AppendLine(line);
            if (!_keepWholeOutput && output.Length > 4 * TailLength) output.Remove(0, output.Length - TailLength);
        }
    }

    public static string Tail(string text) => text.Length <= TailLength ? text : text[^TailLength..];
}
