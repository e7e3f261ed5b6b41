using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Babel.Modeling.Benchmarks;

/// <summary>
/// llama2.c's <c>run.c</c>, compiled from a source file the user gives (gcc -O3 -fopenmp -march=native) into a scratch
/// folder: the independent C decoder that <c>babel bench decode</c> compares Babel with. Never vendored: the source comes
/// from the public llama2.c repository at benchmark time.
/// </summary>
public sealed partial class ReferenceDecoder
{
    private readonly string _executable;

    private ReferenceDecoder(string executable) => _executable = executable;

    /// <summary>
    /// Compiles <paramref name="runCSource"/> into <paramref name="folder"/>; null with one sentence in
    /// <paramref name="problem"/> when there is no source, no gcc, or the compile fails.
    /// </summary>
    public static ReferenceDecoder? Build(string? runCSource, string folder, out string? problem)
    {
        problem = null;
        if (runCSource is null)
        {
            problem = "No run.c given (pass --run-c with the path of llama2.c's run.c), so only Babel's numbers are reported.";
            return null;
        }
        if (!File.Exists(runCSource))
        {
            problem = $"{runCSource} does not exist, so only Babel's numbers are reported.";
            return null;
        }
        var executable = Path.Combine(folder, "run");
        try
        {
            var (exit, _, error) = Execute("gcc", ["-O3", "-fopenmp", "-march=native", "-o", executable, runCSource, "-lm"], null, TimeSpan.FromMinutes(2));
            if (exit != 0)
            {
                problem = $"gcc could not compile {runCSource} (exit {exit}: {error.Trim().Split('\n')[0]}), so only Babel's numbers are reported.";
                return null;
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            problem = "gcc is not installed, so run.c cannot be built and only Babel's numbers are reported.";
            return null;
        }
        return new ReferenceDecoder(executable);
    }

    /// <summary>
    /// Greedy decoding of <paramref name="steps"/> positions from BOS with <paramref name="threads"/> OpenMP threads; the
    /// tokens/s run.c itself reports (timed from its second step).
    /// </summary>
    public double TokensPerSecond(string checkpoint, string tokenizer, int steps, int threads)
    {
        var (exit, _, error) = Execute(_executable, [checkpoint, "-z", tokenizer, "-t", "0", "-n", steps.ToString(CultureInfo.InvariantCulture)],
            new Dictionary<string, string> { ["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture) }, TimeSpan.FromMinutes(10));
        var match = AchievedRate().Match(error);
        if (exit != 0 || !match.Success) throw new InvalidOperationException($"run.c failed (exit {exit}): {error.Trim()}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private static (int Exit, string Output, string Error) Execute(string file, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish within {timeout}.");
        }
        return (process.ExitCode, output.Result, error.Result);
    }

    [GeneratedRegex(@"achieved tok/s: ([0-9.]+)")]
    private static partial Regex AchievedRate();
}
