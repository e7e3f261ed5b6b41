using System.CommandLine;
using Babel.Client.Commands;
using Babel.Storage;

namespace Babel.Client;

/// <summary>The <c>babel</c> command tree and its one error edge: user errors become one sentence and a non-zero exit.</summary>
public static class BabelCli
{
    /// <summary>Exit code for input the user can fix (bad file, bad option, unknown language).</summary>
    public const int InputErrorExitCode = 2;

    public static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("Babel: multilingual expert-activation profiling, self-evaluation distillation and hierarchy-aware classification.");
        foreach (var command in new[]
        {
            QuickstartCommand.Create(),
            DataCommand.Create(),
            TokenizerCommand.Create(),
            PretrainCommand.Create(),
            GenerateCommand.Create(),
            PerplexityCommand.Create(),
            MoefyCommand.Create(),
            ProfileCommand.Create(),
            ProfileCommand.Report(),
            AnalyzeCommand.Create(),
            FinetuneCommand.Create(),
            PruneCommand.Create(),
            PruneCommand.Evaluate(),
            SparseCommand.Create(),
            ConvertCommand.Create(),
            JobCommands.Status(),
            JobCommands.Cancel(),
            JobCommands.Silo(),
            BenchCommand.Create(),
            DistillCommand.Create(),
            ServeCommand.Create(),
            Text2TreeCommand.Create(),
        })
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>; returns the process exit code.</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var configuration = new InvocationConfiguration
        {
            Output = output ?? Console.Out,
            Error = error ?? Console.Error,
            EnableDefaultExceptionHandler = false,
        };
        try
        {
            return CreateRootCommand().Parse(args).Invoke(configuration);
        }
        catch (Exception exception) when (UserMessage(exception) is { } message)
        {
            configuration.Error.WriteLine($"error: {message}");
            return InputErrorExitCode;
        }
    }

    private static string? UserMessage(Exception exception) => exception switch
    {
        UserInputException e => e.Message,
        // The job engine's user errors, thrown by a grain, possibly on another process.
        Babel.Contracts.JobRequestException e => e.Message,
        AggregateException { InnerExceptions.Count: 1 } e => UserMessage(e.InnerExceptions[0]),
        _ => null,
    };
}
