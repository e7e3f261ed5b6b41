using System.CommandLine;

namespace Babel.Client.Jobs;

/// <summary>
/// <c>-o, --format</c>: how a read command prints (e.g. <c>table</c> or <c>json</c>). Named apart from <c>--out</c>, which is
/// always a folder or file to write.
/// </summary>
internal static class FormatOption
{
    public const string Json = "json";

    public static Option<string> Create(string defaultFormat, params string[] others)
    {
        var option = new Option<string>("--format", "-o")
        {
            Description = $"Output format: {string.Join(" or ", new[] { defaultFormat }.Concat(others))}.",
            DefaultValueFactory = _ => defaultFormat,
        };
        option.AcceptOnlyFromAmong([defaultFormat, .. others]);
        return option;
    }
}
