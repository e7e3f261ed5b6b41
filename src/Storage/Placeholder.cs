namespace Babel.Storage; internal static class Placeholder { }
