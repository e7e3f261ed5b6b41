using System.Text.RegularExpressions;

namespace Babel.Modeling.Distillation;

/// <summary>The verdict a teacher gives on a chain of thought in its self-evaluation.</summary>
public enum EvaluationLabel
{
    Correct,
    Wrong,
    Uncertain,
}

/// <summary>Reads "Evaluation result: the given answer is correct|wrong|uncertain" out of a self-evaluation.</summary>
public static partial class SelfEvaluation
{
    /// <summary>The label of the first "Evaluation result:" sentence, or null when there is none ("incorrect" reads as wrong).</summary>
    public static EvaluationLabel? Parse(string text)
    {
        var match = Result().Match(text);
        if (!match.Success) return null;
        return match.Groups[1].Value.ToLowerInvariant() switch
        {
            "correct" or "right" => EvaluationLabel.Correct,
            "wrong" or "incorrect" => EvaluationLabel.Wrong,
            _ => EvaluationLabel.Uncertain,
        };
    }

    /// <summary>
    /// The analysis of a self-evaluation: its text before the first "Evaluation result:" sentence, trimmed (the whole text
    /// when there is none). The authors' code takes the lines before the verdict line; Babel's evaluations end the analysis
    /// with the verdict on the same line, so the cut is at the verdict sentence.
    /// </summary>
    public static string Analysis(string text)
    {
        var match = Result().Match(text);
        return (match.Success ? text[..match.Index] : text).Trim();
    }

    public static string Name(this EvaluationLabel label) => label switch
    {
        EvaluationLabel.Correct => "correct",
        EvaluationLabel.Wrong => "wrong",
        _ => "uncertain",
    };

    [GeneratedRegex(@"evaluation\s+result\s*:\s*(?:the\s+given\s+answer\s+is\s+)?(correct|incorrect|wrong|right|uncertain)\b", RegexOptions.IgnoreCase)]
    private static partial Regex Result();
}
