using System.CommandLine;
using Babel.Client.Commands;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Storage;

namespace Babel.Client;

/// <summary>
/// The <c>babel</c> command tree and its one error edge. Exit codes mean one thing each, for every command: 0 success;
/// 2 a usage or input error (one sentence on stderr); 3 the job failed or was cancelled (its reason on stderr);
/// 130 interrupted; 1 a bug (one line on stderr, the stack trace in a log file it names).
/// </summary>
public static class BabelCli
{
    public const int SuccessExitCode = 0;
    public const int BugExitCode = 1;
    /// <summary>Exit code for input the user can fix (bad file, bad option, unknown language).</summary>
    public const int InputErrorExitCode = 2;
    public const int JobFailedExitCode = 3;
    public const int InterruptedExitCode = 130;

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
            EvalPruningCommand.Create(),
            SparseCommand.Create(),
            ConvertCommand.Create(),
            JobCommands.Status(),
            JobFollowCommands.Watch(),
            JobFollowCommands.Logs(),
            JobFollowCommands.Result(),
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
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null) =>
        RunAsync(CreateRootCommand(), args, output, error, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>
    /// Runs <paramref name="args"/> against <paramref name="root"/>; <paramref name="cancellationToken"/> acts as Ctrl-C does
    /// (the process's own Ctrl-C handling stays on).
    /// </summary>
    internal static async Task<int> RunAsync(RootCommand root, string[] args, TextWriter? output, TextWriter? error, CancellationToken cancellationToken)
    {
        var configuration = new InvocationConfiguration
        {
            Output = output ?? Console.Out,
            Error = error ?? Console.Error,
            EnableDefaultExceptionHandler = false,
        };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && !args.Any(a => a is "--help" or "-h" or "-?"))
        {
            var path = string.Join(' ', Path(parse.CommandResult));
            configuration.Error.WriteLine($"error: {parse.Errors[0].Message}");
            configuration.Error.WriteLine($"usage: {path} [options]; '{path} --help' lists them.");
            return InputErrorExitCode;
        }
        try
        {
            return await parse.InvokeAsync(configuration, cancellationToken);
        }
        catch (Exception exception) when (Classify(exception) is { } known)
        {
            configuration.Error.WriteLine(known.Code == InterruptedExitCode ? known.Message : $"error: {known.Message}");
            return known.Code;
        }
        catch (Exception exception)
        {
            var log = CrashLog.Write(args, exception);
            var message = exception.Message.ReplaceLineEndings(" ");
            if (message.Length > 200) message = message[..200] + "…";
            configuration.Error.WriteLine($"error: an internal error ({exception.GetType().Name}: {message}); the stack trace is in {log}.");
            return BugExitCode;
        }
    }

    private static IEnumerable<string> Path(System.CommandLine.Parsing.CommandResult result) =>
        result.Parent is System.CommandLine.Parsing.CommandResult parent ? [.. Path(parent), result.Command.Name] : ["babel"];

    private static (int Code, string Message)? Classify(Exception exception) => exception switch
    {
        UserInputException e => (InputErrorExitCode, e.Message),
        // An unreachable storage service is reported like bad configuration, its usual cause.
        StorageUnavailableException e => (InputErrorExitCode, e.Message),
        // The job engine's user errors, thrown by a grain, possibly on another process.
        Contracts.JobRequestException e => (InputErrorExitCode, e.Message),
        // A worker found an input corrupt or invalid: exit 2 like the same input found on the client.
        JobFailedException { InputError: true } e => (InputErrorExitCode, e.Message),
        JobFailedException e => (JobFailedExitCode, e.Message),
        // A bad Babel:* setting of the embedded silo: the validators' sentences say what to change.
        Microsoft.Extensions.Options.OptionsValidationException e => (InputErrorExitCode, string.Join(" ", e.Failures)),
        // A silo that died with the call in flight, or a gateway not yet known to be dead: like an unreachable storage service.
        OrleansException e => (InputErrorExitCode, $"the cluster did not answer ({e.Message.Split('\n')[0]}); run the command again in a few seconds, or check the silos."),
        JobInterruptedException e => (InterruptedExitCode, e.Message),
        OperationCanceledException => (InterruptedExitCode, "interrupted."),
        AggregateException { InnerExceptions.Count: 1 } e => Classify(e.InnerExceptions[0]),
        _ => null,
    };
}
