namespace Babel.Storage;

/// <summary>
/// An error the user caused and can fix: a bad file, a bad option, an unknown language.
/// The message is one sentence that names the problem and the fix; the CLI prints it
/// without a stack trace and exits with a non-zero code.
/// </summary>
public sealed class UserInputException(string message, Exception? innerException = null)
    : Exception(message, innerException);
