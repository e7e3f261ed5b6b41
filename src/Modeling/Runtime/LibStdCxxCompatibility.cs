using System.Runtime.InteropServices;
using Babel.Storage;

namespace Babel.Modeling.Runtime;

/// <summary>
/// Lets TorchSharp's <c>libLibTorchSharp.so</c> load on systems whose libstdc++ predates GLIBCXX_3.4.32
/// (Debian 12, Ubuntu 22.04). The library needs that version only for <c>std::ios_base_library_init</c>,
/// a link anchor it never calls, so marking that one version need weak is safe; anything else bound to
/// the version would not be, and is refused.
/// </summary>
internal static class LibStdCxxCompatibility
{
    public const string MissingVersion = "GLIBCXX_3.4.32";
    public const string AnchorSymbol = "_ZSt21ios_base_library_initv";
    private const string TorchSharpLibrary = "libLibTorchSharp.so";

    /// <summary>What <see cref="Apply"/> did to one library file.</summary>
    public enum Outcome { NotNeeded, AlreadyWeak, Patched }

    /// <summary>Patches every copy of libLibTorchSharp.so beside the application, once, when the running libstdc++ lacks the version.</summary>
    public static void EnsureLoadable()
    {
        if (!OperatingSystem.IsLinux()) return;
        if (!IsNeeded(FindRunningLibStdCxx())) return;
        foreach (var library in CandidateLibraries())
        {
            Apply(library);
        }
    }

    /// <summary>True when <paramref name="libStdCxx"/> exists and does not define <see cref="MissingVersion"/>.</summary>
    public static bool IsNeeded(string? libStdCxx) =>
        libStdCxx is not null && !ElfVersionNeeds.Read(libStdCxx).Definitions.Contains(MissingVersion);

    /// <summary>Marks the <see cref="MissingVersion"/> need of <paramref name="library"/> weak, in place and atomically.</summary>
    public static Outcome Apply(string library)
    {
        var elf = ElfVersionNeeds.Read(library);
        var need = elf.Needs.FirstOrDefault(n => n.Name == MissingVersion);
        if (need is null) return Outcome.NotNeeded;
        if ((need.Flags & ElfVersionNeeds.WeakFlag) != 0) return Outcome.AlreadyWeak;
        var bound = elf.Symbols.Where(s => s.VersionIndex == need.Index).Select(s => s.Symbol).ToList();
        if (bound.Any(s => s != AnchorSymbol))
        {
            throw new UserInputException(
                $"{library} binds {string.Join(", ", bound)} to {MissingVersion}, which this system's libstdc++ lacks; " +
                "install a libstdc++ with that version (GCC 13 or newer).");
        }
        elf.MarkWeak(need);
        try
        {
            AtomicFile.WriteAllBytes(library, elf.Image);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new UserInputException(
                $"{library} needs {MissingVersion} marked weak for this system's libstdc++ but is read-only; " +
                "run once with write access or use an image with GCC 13's libstdc++.", e);
        }
        return Outcome.Patched;
    }

    /// <summary>The libstdc++ this process uses: the one already mapped, else the one the loader finds.</summary>
    internal static string? FindRunningLibStdCxx()
    {
        string? Mapped() => File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6 && Path.GetFileName(fields[5]).StartsWith("libstdc++.so", StringComparison.Ordinal))
            .Select(fields => fields[5])
            .FirstOrDefault();
        var path = Mapped();
        if (path is null && NativeLibrary.TryLoad("libstdc++.so.6", out _)) path = Mapped();
        return path;
    }

    private static IEnumerable<string> CandidateLibraries()
    {
        var baseDirectory = AppContext.BaseDirectory;
        foreach (var candidate in new[]
        {
            Path.Combine(baseDirectory, TorchSharpLibrary),
            Path.Combine(baseDirectory, "runtimes", "linux-x64", "native", TorchSharpLibrary),
        })
        {
            if (File.Exists(candidate)) yield return candidate;
        }
    }
}
