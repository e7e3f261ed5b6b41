using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>The task types of self-evaluation distillation, each with its own prompts and answer parser.</summary>
public enum DistillationTask
{
    /// <summary>Numeric math word problems (GSM8K, SVAMP): the answer is a number.</summary>
    Math,

    /// <summary>Multiple choice (CommonsenseQA-style): the answer is a choice letter.</summary>
    Choice,

    /// <summary>Natural-language inference: the answer is entailment, neutral or contradiction.</summary>
    Nli,
}

public static class DistillationTasks
{
    public static DistillationTask Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "math" => DistillationTask.Math,
        "choice" or "multiple-choice" => DistillationTask.Choice,
        "nli" => DistillationTask.Nli,
        _ => throw new UserInputException($"Unknown task '{name}'; use --task math, choice or nli."),
    };

    public static string Name(this DistillationTask task) => task switch
    {
        DistillationTask.Math => "math",
        DistillationTask.Choice => "choice",
        _ => "nli",
    };
}
