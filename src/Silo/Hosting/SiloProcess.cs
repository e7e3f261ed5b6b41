using Babel.Modeling.Runtime;

namespace Babel.Silo;

/// <summary>A silo process: the <c>Babel.Silo</c> executable and <c>babel silo</c> both run this.</summary>
public static class SiloProcess
{
    /// <summary>
    /// The only argument of a run that loads TorchSharp once and exits: it applies the libstdc++ fix to the application
    /// folder while that folder is writable (the image build runs it as root), so a read-only root filesystem needs no write.
    /// </summary>
    public const string PrepareNativeArgument = "--prepare-native";

    /// <summary>Runs a silo with its HTTP endpoints until stopped; bad options are one sentence on stderr and exit code 2.</summary>
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken = default)
    {
        try
        {
            if (args is [PrepareNativeArgument])
            {
                TorchRuntime.Initialize();
                await Console.Out.WriteLineAsync($"TorchSharp loads from {AppContext.BaseDirectory} ({TorchRuntime.Threads} torch thread).");
                return 0;
            }

            var builder = WebApplication.CreateBuilder(HostArguments.With(args));
            builder.AddBabelHttp();
            builder.AddBabelSilo();
            builder.AddBabelTelemetry();

            await using var app = builder.Build();
            app.MapBabelEndpoints();
            await app.RunAsync(cancellationToken);
            return 0;
        }
        catch (Exception e) when (StartupFailure.Describe(e) is { } message)
        {
            await Console.Error.WriteLineAsync(message);
            return StartupFailure.ExitCode;
        }
    }
}
