namespace Babel.Modeling.Distillation;

/// <summary>One completion request to a teacher: the prompt and its sampling parameters, with the seed of this sample.</summary>
public sealed record TeacherRequest(string Prompt, double Temperature, double TopP, int MaxTokens, long Seed, IReadOnlyList<string> Stop);

/// <summary>What a teacher wrote, and the tokens it counted for the prompt and the completion.</summary>
public sealed record TeacherCompletion(string Text, long PromptTokens, long CompletionTokens, string FinishReason);

/// <summary>The outcome of one request: a completion, or the reason it failed for good (after the teacher's own retries).</summary>
public sealed record TeacherResult(TeacherCompletion? Completion, string? Error)
{
    public static TeacherResult Failed(string reason) => new(null, reason);
}

/// <summary>
/// A teacher LLM: a local model folder run with batched KV-cache generation, or an OpenAI-compatible HTTP endpoint.
/// Results come back in request order; a request that fails does not fail the others.
/// </summary>
public interface ITeacher : IDisposable
{
    /// <summary>What identifies this teacher's outputs in the cache: its kind, the model (content hash or name) and endpoint.</summary>
    string Identity { get; }

    Task<IReadOnlyList<TeacherResult>> CompleteAsync(IReadOnlyList<TeacherRequest> requests, CancellationToken cancellationToken);
}

/// <summary>A shared budget of requests and tokens per minute; returns how long the caller must wait before it sends.</summary>
public interface ITeacherRateLimiter
{
    Task<TimeSpan> ReserveAsync(int requests, long tokens, CancellationToken cancellationToken);
}
