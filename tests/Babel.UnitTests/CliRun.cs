using Babel.Client;

namespace Babel.UnitTests;

/// <summary>Runs the <c>babel</c> command tree in-process, as the executable would, capturing both streams.</summary>
internal static class CliRun
{
    public static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = BabelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
