using System.Security.Cryptography;
using System.Text;

namespace Babel.Modeling.Distillation;

/// <summary>
/// The few-shot prompt of one task type for one role: <c>{question}</c>, <c>{choices}</c> and (for self-evaluation)
/// <c>{cot}</c> are filled in. The text is a file in the repository (<c>Distillation/Templates/TASK-ROLE.txt</c>);
/// its SHA-256 goes into every output manifest, so a dataset names the exact prompts that made it.
/// </summary>
public sealed record PromptTemplate(string Name, string Text)
{
    public string Sha256 { get; } = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Text)));

    public string Fill(DistillationQuestion question, string? cot = null) => Text
        .Replace("{choices}", question.Choices is null ? "" : ChoiceText(question.Choices), StringComparison.Ordinal)
        .Replace("{cot}", cot?.Trim() ?? "", StringComparison.Ordinal)
        // Last, so braces inside the question are never read as placeholders.
        .Replace("{question}", question.Question.Trim(), StringComparison.Ordinal);

    /// <summary>"(a) first (b) second ..." as in CommonsenseQA prompts.</summary>
    public static string ChoiceText(IReadOnlyList<string> choices) =>
        string.Join(' ', choices.Select((c, i) => $"({(char)('a' + i)}) {c.Trim()}"));
}

/// <summary>The pair of templates a task uses: chain-of-thought generation and self-evaluation.</summary>
public sealed record PromptTemplates(DistillationTask Task, PromptTemplate ChainOfThought, PromptTemplate Evaluation)
{
    public static PromptTemplates For(DistillationTask task) =>
        new(task, Load($"{task.Name()}-cot"), Load($"{task.Name()}-evaluation"));

    private static PromptTemplate Load(string name)
    {
        var resource = $"Babel.Modeling.Distillation.Templates.{name}.txt";
        using var stream = typeof(PromptTemplates).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"The template {resource} is not embedded in this build.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        // Line endings are normalised so the hash does not depend on how the repository was checked out.
        return new PromptTemplate(name, reader.ReadToEnd().Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n'));
    }
}
