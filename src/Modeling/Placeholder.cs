namespace Babel.Modeling; internal static class Placeholder { }
