using Spectre.Console;

namespace Babel.Client;

/// <summary>Spectre.Console bound to the command's output writer: colour and live progress only on a real terminal.</summary>
internal static class CommandConsole
{
    public static IAnsiConsole For(TextWriter writer)
    {
        var terminal = (ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected) || (ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected);
        return AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
    }
}
