using System.Globalization;
using System.Text.RegularExpressions;

namespace Babel.Modeling.Distillation;

/// <summary>
/// Reads the final answer out of a teacher's chain of thought ("... The answer is X.") and the gold answer out of a
/// dataset record, both normalised so equal answers compare equal as strings: numbers in invariant form
/// ("1234.5"), choice letters lower case ("b"), NLI labels by name ("entailment"). Null means unparseable.
/// </summary>
public static partial class AnswerParser
{
    /// <summary>Digits after the point kept when normalising a number (fractions such as 1/3 are rounded).</summary>
    public const int Decimals = 6;

    public static string? ParsePrediction(DistillationTask task, string text, IReadOnlyList<string>? choices = null) =>
        AnswerTail(text) is not { } tail ? null : task switch
        {
            DistillationTask.Math => ParseNumber(tail),
            DistillationTask.Choice => ParseChoice(tail, choices),
            _ => ParseNliLabel(tail),
        };

    /// <summary>The normalised gold answer of a dataset record; throws a clear error when it cannot be read.</summary>
    public static string? ParseGold(DistillationTask task, string gold, IReadOnlyList<string>? choices = null) => task switch
    {
        DistillationTask.Math => ParseGoldNumber(gold),
        DistillationTask.Choice => ParseChoice(gold, choices) ?? ParseChoiceLetterOnly(gold, choices),
        _ => ParseNliLabel(gold),
    };

    /// <summary>
    /// A numeric gold answer: GSM8K's number after <c>####</c>, a plain number, or an SVAMP-style equation such as
    /// <c>( 8.0 - 5.0 )</c> evaluated.
    /// </summary>
    public static string? ParseGoldNumber(string gold)
    {
        var marker = gold.LastIndexOf("####", StringComparison.Ordinal);
        if (marker >= 0) return ParseNumber(gold[(marker + 4)..]);
        var trimmed = gold.Trim();
        if (PlainNumber().IsMatch(trimmed)) return ParseNumber(trimmed);
        return Arithmetic.TryEvaluate(trimmed, out var value) ? Normalize(value) : ParseNumber(trimmed);
    }

    /// <summary>The text after the last "answer is" (or "answer:"), or null when the teacher never states an answer.</summary>
    public static string? AnswerTail(string text)
    {
        var matches = AnswerPhrase().Matches(text);
        return matches.Count == 0 ? null : text[(matches[^1].Index + matches[^1].Length)..];
    }

    /// <summary>The first number in <paramref name="text"/>: "$1,234.50", "1,234", "-3", "3/4", "1 1/2" is not read as a mixed number.</summary>
    public static string? ParseNumber(string text)
    {
        var match = Number().Match(text);
        if (!match.Success) return null;
        var negative = match.Groups["sign"].Success;
        var integer = match.Groups["int"].Value.Replace(",", "", StringComparison.Ordinal);
        var number = decimal.Parse(integer.Length == 0 ? "0" : integer, NumberStyles.None, CultureInfo.InvariantCulture);
        if (match.Groups["frac"].Success)
        {
            number += decimal.Parse("0." + match.Groups["frac"].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        }
        if (match.Groups["den"].Success)
        {
            var denominator = decimal.Parse(match.Groups["den"].Value, NumberStyles.None, CultureInfo.InvariantCulture);
            if (denominator == 0) return null;
            number /= denominator;
        }
        return Normalize(negative ? -number : number);
    }

    public static string Normalize(decimal value)
    {
        var rounded = Math.Round(value, Decimals, MidpointRounding.AwayFromZero);
        if (rounded == 0) rounded = 0;
        return rounded.ToString("0.######", CultureInfo.InvariantCulture);
    }

    /// <summary>A choice: "(b)", "b)", "B", "(B) cupboard", or the text of one of <paramref name="choices"/>.</summary>
    public static string? ParseChoice(string text, IReadOnlyList<string>? choices)
    {
        var letters = choices is { Count: > 0 } ? choices.Count : 5;
        var parenthesised = ParenthesisedLetter().Match(text);
        if (parenthesised.Success && Letter(parenthesised.Groups[1].Value, letters) is { } inParentheses) return inParentheses;
        var leading = LeadingLetter().Match(text);
        if (leading.Success && Letter(leading.Groups[1].Value, letters) is { } atStart)
        {
            // "a hat": a lower-case 'a' followed by a word is an article, not a choice.
            var isArticle = leading.Groups[1].Value == "a" && !leading.Groups[2].Success;
            if (!isArticle) return atStart;
        }
        if (choices is { Count: > 0 })
        {
            var head = text.Trim().TrimEnd('.', '!', ' ').Trim();
            for (var i = 0; i < choices.Count; i++)
            {
                if (string.Equals(head, choices[i].Trim(), StringComparison.OrdinalIgnoreCase)) return ((char)('a' + i)).ToString();
            }
        }
        return null;
    }

    private static string? ParseChoiceLetterOnly(string text, IReadOnlyList<string>? choices)
    {
        var trimmed = text.Trim();
        return trimmed.Length == 1 ? Letter(trimmed, choices is { Count: > 0 } ? choices.Count : 5) : null;
    }

    private static string? Letter(string letter, int count)
    {
        var index = char.ToLowerInvariant(letter[0]) - 'a';
        return index >= 0 && index < count ? ((char)('a' + index)).ToString() : null;
    }

    /// <summary>The first NLI label named in <paramref name="text"/>.</summary>
    public static string? ParseNliLabel(string text)
    {
        var match = NliLabel().Match(text);
        if (!match.Success) return null;
        var word = match.Value.ToLowerInvariant();
        return word.StartsWith("entail", StringComparison.Ordinal) ? "entailment"
            : word.StartsWith("contradict", StringComparison.Ordinal) ? "contradiction"
            : "neutral";
    }

    [GeneratedRegex(@"\banswer\s+is\b\s*:?|\banswer\s*:", RegexOptions.IgnoreCase)]
    private static partial Regex AnswerPhrase();

    [GeneratedRegex(@"(?<sign>[-−])?\s*[$€£]?\s*(?<int>\d{1,3}(?<comma>,\d{3})+|\d+)?(?:\.(?<frac>\d+))?(?:\s*/\s*(?<den>\d+))?(?<=\d)")]
    private static partial Regex Number();

    [GeneratedRegex(@"^\s*[-+]?\s*\d[\d,]*(\.\d+)?\s*$")]
    private static partial Regex PlainNumber();

    [GeneratedRegex(@"\(\s*([A-Za-z])\s*\)")]
    private static partial Regex ParenthesisedLetter();

    [GeneratedRegex(@"^\s*([A-Za-z])(?:(\s*[).:,]|\s*$)|(?=\s))")]
    private static partial Regex LeadingLetter();

    [GeneratedRegex(@"\b(entail\w*|contradict\w*|neutral)\b", RegexOptions.IgnoreCase)]
    private static partial Regex NliLabel();
}
