namespace Babel.Storage.Icpc;

/// <summary>
/// How a code becomes a path in the label tree (root excluded): ICPC-2 chapter letter → component → code,
/// ICD-10 chapter letter → 3-character category → full code, or a path given with the label (<c>a/b/code</c>).
/// </summary>
public static class LabelSchemes
{
    public const string Icpc2 = "icpc2";
    public const string Icd10 = "icd10";
    public const string Paths = "paths";

    public static IReadOnlyList<string> Names { get; } = [Icpc2, Icd10, Paths];

    /// <summary>The path of <paramref name="label"/> under <paramref name="scheme"/>; for <see cref="Paths"/> the label is <c>a/b/code</c>.</summary>
    public static string[] PathOf(string scheme, string label) => scheme switch
    {
        Icpc2 => [label[..1], ComponentNode(label), label],
        Icd10 => Icd10Path(label),
        Paths => PathSegments(label),
        _ => throw new UserInputException($"unknown label scheme '{scheme}'; use one of: {string.Join(", ", Names)}."),
    };

    /// <summary>The component node of an ICPC-2 code, named <c>A:1</c> (chapter and component number).</summary>
    public static string ComponentNode(string code) => $"{code[0]}:{IcpcThesaurus.Component(code)}";

    private static string[] Icd10Path(string code)
    {
        var trimmed = code.Trim().ToUpperInvariant();
        if (trimmed.Length < 3 || !char.IsAsciiLetterUpper(trimmed[0]) || !char.IsAsciiDigit(trimmed[1]))
        {
            throw new UserInputException($"'{code}' is not an ICD-10 code (a letter, two digits, optional subdivision, e.g. I10 or J45.9).");
        }
        return [trimmed[..1], trimmed[..3], trimmed];
    }

    private static string[] PathSegments(string label)
    {
        var segments = label.Split('/', StringSplitOptions.TrimEntries);
        if (segments.Any(s => s.Length == 0))
        {
            throw new UserInputException($"label path '{label}' has an empty segment; write paths as parent/child/code.");
        }
        return segments;
    }

    /// <summary>
    /// Builds the label set of a tree file: one leaf per line, <c>CODE&lt;TAB&gt;description</c>
    /// (for <see cref="Paths"/>, <c>a/b/CODE&lt;TAB&gt;description</c>); blank lines and lines starting with <c>#</c> are skipped.
    /// </summary>
    public static LabelSet ReadTreeFile(string path, string scheme)
    {
        if (!File.Exists(path)) throw new UserInputException($"tree file '{path}' does not exist; pass a file with one 'CODE<TAB>description' line per label.");
        if (!Names.Contains(scheme)) throw new UserInputException($"unknown label scheme '{scheme}'; use one of: {string.Join(", ", Names)}.");
        var labels = new List<LabelEntry>();
        var number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line) || line.StartsWith('#')) continue;
            var tab = line.IndexOf('\t');
            var label = (tab < 0 ? line : line[..tab]).Trim();
            var description = tab < 0 ? label : line[(tab + 1)..].Trim();
            var labelPath = PathOf(scheme, label);
            labels.Add(new LabelEntry(labelPath[^1], description, labelPath));
        }
        if (labels.Count == 0) throw new UserInputException($"tree file '{path}' lists no labels; write one 'CODE<TAB>description' line per label.");
        return new LabelSet(scheme, labels, []);
    }

    /// <summary>Maps each record's labels to leaf codes (a path label becomes its last segment; ICD-10 codes are upper-cased).</summary>
    public static CodedText Normalise(string scheme, CodedText record) => record with
    {
        Labels = [.. record.Labels.Select(l => scheme switch
        {
            Paths => PathSegments(l)[^1],
            Icd10 => l.Trim().ToUpperInvariant(),
            _ => l.Trim(),
        })],
    };
}
