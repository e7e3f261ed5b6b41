using System.Text;
using Babel.Modeling.Runtime;
using TorchSharp;
using Xunit;

namespace Babel.UnitTests.Runtime;

public class LibStdCxxCompatibilityTests
{
    private static string TorchSharpLibrary => Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");

    [Fact]
    public void Torch_loads_and_multiplies_after_initialization()
    {
        TorchRuntime.Initialize();
        using var a = torch.ones(2, 3);
        using var b = torch.ones(3, 4);
        using var c = a.matmul(b);
        Assert.Equal(3f, c[1, 2].item<float>());
    }

    [Fact]
    public void Patch_is_needed_exactly_when_the_running_libstdcxx_lacks_the_version()
    {
        var libStdCxx = LibStdCxxCompatibility.FindRunningLibStdCxx();
        Assert.NotNull(libStdCxx);
        // Independent check: the version name appears as a NUL-terminated string in the library's string table.
        var hasVersion = ContainsBytes(File.ReadAllBytes(libStdCxx!), Encoding.ASCII.GetBytes(LibStdCxxCompatibility.MissingVersion + "\0"));
        Assert.Equal(!hasVersion, LibStdCxxCompatibility.IsNeeded(libStdCxx));
        Assert.Contains("GLIBCXX_3.4", string.Join(",", ElfVersionNeeds.Read(libStdCxx!).Definitions), StringComparison.Ordinal);
    }

    [Fact]
    public void Apply_marks_only_the_anchor_version_weak_and_is_idempotent()
    {
        TorchRuntime.Initialize();
        var directory = Directory.CreateTempSubdirectory("babel-elf-");
        try
        {
            var copy = Path.Combine(directory.FullName, "libLibTorchSharp.so");
            var original = File.ReadAllBytes(TorchSharpLibrary);
            var elf = ElfVersionNeeds.Parse(original, "copy");
            var need = Assert.Single(elf.Needs, n => n.Name == LibStdCxxCompatibility.MissingVersion);
            var bound = elf.Symbols.Where(s => s.VersionIndex == need.Index).Select(s => s.Symbol);
            Assert.Equal([LibStdCxxCompatibility.AnchorSymbol], bound);

            // Start from the unpatched state whatever the build output holds now.
            var unpatched = (byte[])original.Clone();
            unpatched[need.FlagsOffset] &= unchecked((byte)~ElfVersionNeeds.WeakFlag);
            File.WriteAllBytes(copy, unpatched);

            Assert.Equal(LibStdCxxCompatibility.Outcome.Patched, LibStdCxxCompatibility.Apply(copy));
            var patched = File.ReadAllBytes(copy);
            var changed = Enumerable.Range(0, patched.Length).Where(i => patched[i] != unpatched[i]).ToList();
            Assert.Equal([need.FlagsOffset], changed);
            Assert.Equal(ElfVersionNeeds.WeakFlag, patched[need.FlagsOffset] & ElfVersionNeeds.WeakFlag);
            Assert.Equal(LibStdCxxCompatibility.Outcome.AlreadyWeak, LibStdCxxCompatibility.Apply(copy));
            Assert.All(ElfVersionNeeds.Read(copy).Needs.Where(n => n.Name != LibStdCxxCompatibility.MissingVersion),
                n => Assert.Equal(0, n.Flags & ElfVersionNeeds.WeakFlag));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static bool ContainsBytes(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;
}
