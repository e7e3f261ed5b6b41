using Babel.Modeling.Runtime;
using Babel.Silo;
using Xunit;

namespace Babel.UnitTests.Deploy;

/// <summary>What deploy/docker/Dockerfile runs at image build so the container never writes under its read-only /app.</summary>
public class ImageTests
{
    [Fact]
    public async Task Prepare_native_loads_TorchSharp_and_leaves_nothing_to_patch_at_run_time()
    {
        var exitCode = await SiloProcess.RunAsync([SiloProcess.PrepareNativeArgument]);

        Assert.Equal(0, exitCode);
        var library = new[] { "libLibTorchSharp.so", Path.Combine("runtimes", "linux-x64", "native", "libLibTorchSharp.so") }
            .Select(p => Path.Combine(AppContext.BaseDirectory, p)).First(File.Exists);
        var need = ElfVersionNeeds.Read(library).Needs.SingleOrDefault(n => n.Name == LibStdCxxCompatibility.MissingVersion);
        // Either this libstdc++ has the version, or the need is weak already: a second start (read-only) writes nothing.
        var running = LibStdCxxCompatibility.FindRunningLibStdCxx();
        Assert.True(!LibStdCxxCompatibility.IsNeeded(running) || need is null || (need.Flags & ElfVersionNeeds.WeakFlag) != 0);
        if (LibStdCxxCompatibility.IsNeeded(running))
            Assert.Equal(need is null ? LibStdCxxCompatibility.Outcome.NotNeeded : LibStdCxxCompatibility.Outcome.AlreadyWeak, LibStdCxxCompatibility.Apply(library));
    }
}
