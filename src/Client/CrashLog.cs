using System.Globalization;

namespace Babel.Client;

/// <summary>Where a bug's stack trace goes: a file under the temporary folder, named in the one line the user sees.</summary>
internal static class CrashLog
{
    public static string Write(string[] args, Exception exception)
    {
        var folder = Path.Combine(Path.GetTempPath(), "babel-logs");
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, string.Create(CultureInfo.InvariantCulture, $"babel-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Environment.ProcessId}.log"));
        // Arguments are logged by name only: a value could be a secret.
        File.WriteAllText(path, $"babel {string.Join(' ', args.Select(a => a.StartsWith('-') ? a : "…"))}\n{exception}\n");
        return path;
    }
}
