namespace Babel.Grains;

internal static class GrainsAssembly;
