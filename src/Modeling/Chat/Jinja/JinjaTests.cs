namespace Babel.Modeling.Chat.Jinja;

/// <summary>Jinja2's built-in tests (<c>x is defined</c>, <c>x is string</c>, <c>x is equalto y</c>, ...) with Python's type rules.</summary>
internal static class JinjaTests
{
    public static IReadOnlyDictionary<string, JinjaTest> All { get; } = Build();

    private static Dictionary<string, JinjaTest> Build()
    {
        var tests = new Dictionary<string, JinjaTest>(StringComparer.Ordinal)
        {
            ["defined"] = (v, _) => v is not Undefined,
            ["undefined"] = (v, _) => v is Undefined,
            ["none"] = (v, _) => v is null,
            ["boolean"] = (v, _) => v is bool,
            ["true"] = (v, _) => v is true,
            ["false"] = (v, _) => v is false,
            ["integer"] = (v, _) => v is long,
            ["float"] = (v, _) => v is double,
            ["number"] = (v, _) => v is bool or long or double,
            ["string"] = (v, _) => v is string,
            ["mapping"] = (v, _) => v is OrderedDictionary<string, object?>,
            // Python: anything iter() accepts; Jinja2's Undefined iterates (as empty).
            ["iterable"] = (v, _) => v is string or IReadOnlyList<object?> or OrderedDictionary<string, object?> or Undefined or LoopState,
            ["sequence"] = (v, _) => v is string or IReadOnlyList<object?> or OrderedDictionary<string, object?> or Undefined,
            ["callable"] = (v, _) => v is JinjaCallable,
            ["sameas"] = (v, a) => SameAs(v, Argument(a, "sameas")),
            ["in"] = (v, a) => JinjaOperations.Contains(Argument(a, "in"), v),
            ["divisibleby"] = (v, a) => JinjaMethods.Integer(v, "value") % NonZero(JinjaMethods.Integer(Argument(a, "divisibleby"), "num")) == 0,
            ["odd"] = (v, _) => JinjaMethods.Integer(v, "value") % 2 != 0,
            ["even"] = (v, _) => JinjaMethods.Integer(v, "value") % 2 == 0,
            ["lower"] = (v, _) => PythonText.Str(v) is var s && s.Any(char.IsLower) && !s.Any(char.IsUpper),
            ["upper"] = (v, _) => PythonText.Str(v) is var s && s.Any(char.IsUpper) && !s.Any(char.IsLower),
        };
        JinjaTest equal = (v, a) => JinjaOperations.AreEqual(v, Argument(a, "=="));
        JinjaTest notEqual = (v, a) => !JinjaOperations.AreEqual(v, Argument(a, "!="));
        JinjaTest less = (v, a) => JinjaOperations.Compare(v, Argument(a, "<"), "<") < 0;
        JinjaTest lessOrEqual = (v, a) => JinjaOperations.Compare(v, Argument(a, "<="), "<=") <= 0;
        JinjaTest greater = (v, a) => JinjaOperations.Compare(v, Argument(a, ">"), ">") > 0;
        JinjaTest greaterOrEqual = (v, a) => JinjaOperations.Compare(v, Argument(a, ">="), ">=") >= 0;
        foreach (var name in (string[])["eq", "equalto", "=="]) tests[name] = equal;
        foreach (var name in (string[])["ne", "!="]) tests[name] = notEqual;
        foreach (var name in (string[])["lt", "lessthan", "<"]) tests[name] = less;
        foreach (var name in (string[])["le", "<="]) tests[name] = lessOrEqual;
        foreach (var name in (string[])["gt", "greaterthan", ">"]) tests[name] = greater;
        foreach (var name in (string[])["ge", ">="]) tests[name] = greaterOrEqual;
        return tests;
    }

    private static object? Argument(CallArguments arguments, string test)
    {
        if (arguments.Positional.Count != 1 || arguments.Keywords.Count > 0) throw new JinjaException($"The test '{test}' takes one argument.");
        return arguments.Positional[0];
    }

    private static long NonZero(long value) => value != 0 ? value : throw new JinjaException("integer division or modulo by zero");

    /// <summary>Python's <c>is</c>: the same object; None, booleans and small integers are shared.</summary>
    private static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y && x is >= -5 and <= 256,
        _ => a is not null && ReferenceEquals(a, b),
    };
}
