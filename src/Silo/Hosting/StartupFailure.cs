using Babel.Storage;
using Microsoft.Extensions.Options;

namespace Babel.Silo;

/// <summary>Turns an error the user can fix (bad options, bad input) into the one-line message printed instead of a stack trace.</summary>
public static class StartupFailure
{
    /// <summary>Exit code of a startup refused for bad options or input, as the CLI uses for bad input.</summary>
    public const int ExitCode = 2;

    /// <summary>The message to print for <paramref name="error"/>, free of storage secrets; null when it is a bug, not bad input.</summary>
    public static string? Describe(Exception error)
    {
        var messages = Messages(error).ToList();
        if (messages.Count == 0)
            return null;
        var text = string.Join(Environment.NewLine, messages.Distinct(StringComparer.Ordinal));
        foreach (var key in StorageConnectionString.Keys)
        {
            var secret = Environment.GetEnvironmentVariable(key);
            if (!string.IsNullOrWhiteSpace(secret))
                text = text.Replace(secret.Trim(), "***", StringComparison.Ordinal);
        }
        return StorageConnectionString.RedactSecrets(text);
    }

    private static IEnumerable<string> Messages(Exception error) => error switch
    {
        OptionsValidationException invalid => invalid.Failures,
        UserInputException input => [input.Message],
        StorageUnavailableException unavailable => [unavailable.Message],
        AggregateException aggregate when aggregate.InnerExceptions.All(e => Messages(e).Any()) =>
            aggregate.InnerExceptions.SelectMany(Messages),
        _ => [],
    };
}
