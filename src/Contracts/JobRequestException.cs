namespace Babel.Contracts;

/// <summary>
/// A request to the job engine that the user can fix (no such job, a conflicting spec, an invalid plan). The message is one
/// sentence naming the problem and the fix. Unlike the storage layer's <c>UserInputException</c>, it has an Orleans codec,
/// so it reaches a client on another process intact and the CLI reports it without a stack trace.
/// </summary>
[GenerateSerializer]
public sealed class JobRequestException : Exception
{
    public JobRequestException(string message)
        : base(message)
    {
    }

    public JobRequestException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
