using System.Runtime.CompilerServices;

namespace Babel.Modeling.Runtime;

/// <summary>Makes TorchSharp loadable as soon as Babel.Modeling is used, so no code path can reach torch before the fix.</summary>
internal static class NativeLibraryInitializer
{
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "The libstdc++ fix must precede any torch call, whoever makes it.")]
    internal static void Initialize() => LibStdCxxCompatibility.EnsureLoadable();
}
