using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Babel.Modeling.Chat.Jinja;

internal delegate object? JinjaFilter(RenderContext context, object? value, CallArguments arguments);

internal delegate bool JinjaTest(object? value, CallArguments arguments);

/// <summary>
/// Jinja2's built-in filters that chat templates use, with their Python behaviour, and transformers' <c>tojson</c>
/// (<c>json.dumps</c> with <c>ensure_ascii=False</c> and its <c>indent</c>, <c>separators</c>, <c>sort_keys</c>).
/// </summary>
internal static partial class JinjaFilters
{
    public static IReadOnlyDictionary<string, JinjaFilter> All { get; } = new Dictionary<string, JinjaFilter>(StringComparer.Ordinal)
    {
        ["abs"] = (_, v, a) => NoArguments(a, "abs", v switch
        {
            bool or long => Math.Abs(JinjaMethods.Integer(v, "value")),
            double d => (object)Math.Abs(d),
            _ => throw new JinjaException($"bad operand type for abs(): '{PythonText.TypeName(v)}'"),
        }),
        ["attr"] = (_, v, a) => v switch
        {
            Undefined u => throw u.Error(),
            _ when a.Get(0, "name") is string name => v is OrderedDictionary<string, object?> dict
                ? (object?)JinjaMethods.Find(dict, name) ?? Undefined.Attribute(v, name)
                : JinjaOperations.GetAttribute(v, name),
            _ => throw new JinjaException("attr() needs an attribute name"),
        },
        ["capitalize"] = (_, v, a) => NoArguments(a, "capitalize", JinjaMethods.Capitalize(PythonText.Str(v))),
        ["count"] = (_, v, a) => NoArguments(a, "count", Length(v)),
        ["d"] = Default,
        ["default"] = Default,
        ["dictsort"] = DictSort,
        ["e"] = (_, v, a) => NoArguments(a, "e", Escape(v)),
        ["escape"] = (_, v, a) => NoArguments(a, "escape", Escape(v)),
        ["first"] = (_, v, a) => NoArguments(a, "first", JinjaOperations.Iterate(v) is { Count: > 0 } items ? items[0] : new Undefined("No first item, sequence was empty")),
        ["float"] = (_, v, a) =>
        {
            a.Expect("float", 1, "default");
            return ToFloat(v) ?? a.Get(0, "default", 0.0);
        },
        ["indent"] = Indent,
        ["int"] = (_, v, a) =>
        {
            a.Expect("int", 2, "default", "base");
            return ToInteger(v, JinjaMethods.Integer(a.Get(1, "base", 10L), "base")) ?? a.Get(0, "default", 0L);
        },
        ["items"] = (_, v, a) => NoArguments(a, "items", v switch
        {
            Undefined => new List<object?>(),
            OrderedDictionary<string, object?> dict => dict.Select(p => (object?)new object?[] { p.Key, p.Value }).ToList(),
            _ => throw new JinjaException("Can only get item pairs from a mapping."),
        }),
        ["join"] = (context, v, a) =>
        {
            a.Expect("join", 2, "d", "attribute");
            var separator = PythonText.Str(a.Get(0, "d", ""));
            var items = JinjaOperations.Iterate(v);
            if (a.Get(1, "attribute") is { } attribute) items = [.. items.Select(item => AttributeOf(item, attribute))];
            return string.Join(separator, items.Select(PythonText.Str));
        },
        ["last"] = (_, v, a) => NoArguments(a, "last", JinjaOperations.Iterate(v) is { Count: > 0 } items ? items[^1] : new Undefined("No last item, sequence was empty")),
        ["length"] = (_, v, a) => NoArguments(a, "length", Length(v)),
        ["list"] = (_, v, a) => NoArguments(a, "list", JinjaOperations.Iterate(v).ToList()),
        ["lower"] = (_, v, a) => NoArguments(a, "lower", PythonText.Str(v).ToLowerInvariant()),
        ["map"] = Map,
        ["max"] = (_, v, a) => MinMax(v, a, "max", sign: 1),
        ["min"] = (_, v, a) => MinMax(v, a, "min", sign: -1),
        ["reject"] = (_, v, a) => Select(v, a, attribute: false, keep: false),
        ["rejectattr"] = (_, v, a) => Select(v, a, attribute: true, keep: false),
        ["replace"] = (_, v, a) =>
        {
            a.Expect("replace", 3, "old", "new", "count");
            if (a.Get(0, "old") is not string old || a.Get(1, "new") is not string replacement)
                throw new JinjaException("replace() needs the old and new strings");
            var count = a.Get(2, "count") is { } c ? JinjaMethods.Integer(c, "count") : -1;
            return JinjaMethods.Replace(PythonText.Str(v), old, replacement, count);
        },
        ["reverse"] = (_, v, a) => NoArguments(a, "reverse", v is string s
            ? string.Concat(PythonText.CodePoints(s).AsEnumerable().Reverse())
            : JinjaOperations.Iterate(v).Reverse().ToList()),
        ["round"] = (_, v, a) =>
        {
            a.Expect("round", 2, "precision", "method");
            var precision = (int)JinjaMethods.Integer(a.Get(0, "precision", 0L), "precision");
            var number = ToFloat(v) ?? throw new JinjaException($"round() needs a number (got {PythonText.TypeName(v)})");
            var scale = Math.Pow(10, precision);
            return a.Get(1, "method", "common") switch
            {
                "common" => Math.Round(number, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
                "ceil" => Math.Ceiling(number * scale) / scale,
                "floor" => Math.Floor(number * scale) / scale,
                _ => throw new JinjaException("method must be 'common', 'ceil' or 'floor'"),
            };
        },
        ["safe"] = (_, v, a) => NoArguments(a, "safe", PythonText.Str(v)),
        ["select"] = (_, v, a) => Select(v, a, attribute: false, keep: true),
        ["selectattr"] = (_, v, a) => Select(v, a, attribute: true, keep: true),
        ["sort"] = Sort,
        ["string"] = (_, v, a) => NoArguments(a, "string", PythonText.Str(v)),
        ["sum"] = (_, v, a) =>
        {
            a.Expect("sum", 2, "attribute", "start");
            object? total = a.Get(1, "start", 0L);
            var attribute = a.Get(0, "attribute");
            foreach (var item in JinjaOperations.Iterate(v)) total = JinjaOperations.Add(total, attribute is null ? item : AttributeOf(item, attribute));
            return total;
        },
        ["title"] = (_, v, a) => NoArguments(a, "title", Title(PythonText.Str(v))),
        ["tojson"] = (_, v, a) =>
        {
            a.Expect("tojson", 4, "ensure_ascii", "indent", "separators", "sort_keys");
            var indent = a.Get(1, "indent") switch
            {
                null => null,
                string text => text,
                var n => new string(' ', (int)Math.Clamp(JinjaMethods.Integer(n, "indent"), 0, 64)),
            };
            (string, string)? separators = a.Get(2, "separators") switch
            {
                null => null,
                IReadOnlyList<object?> { Count: 2 } pair when pair[0] is string item && pair[1] is string key => (item, key),
                _ => throw new JinjaException("separators must be a pair of strings"),
            };
            return PythonText.Json(v, JinjaOperations.Truthy(a.Get(0, "ensure_ascii", false)), indent, separators, JinjaOperations.Truthy(a.Get(3, "sort_keys", false)));
        },
        ["trim"] = (_, v, a) =>
        {
            a.Expect("trim", 1, "chars");
            return PythonText.Strip(PythonText.Str(v), a.Get(0, "chars") as string);
        },
        ["unique"] = Unique,
        ["upper"] = (_, v, a) => NoArguments(a, "upper", PythonText.Str(v).ToUpperInvariant()),
        ["wordcount"] = (_, v, a) => NoArguments(a, "wordcount", (long)WordPattern().Matches(PythonText.Str(v)).Count),
    };

    private static object? NoArguments(CallArguments arguments, string name, object? result)
    {
        if (arguments.Positional.Count > 0 || arguments.Keywords.Count > 0) throw new JinjaException($"The filter '{name}' takes no arguments.");
        return result;
    }

    private static object? Default(RenderContext context, object? value, CallArguments arguments)
    {
        arguments.Expect("default", 2, "default_value", "boolean");
        var fallback = arguments.Get(0, "default_value", "");
        var boolean = JinjaOperations.Truthy(arguments.Get(1, "boolean", false));
        return value is Undefined || (boolean && !JinjaOperations.Truthy(value)) ? fallback : value;
    }

    private static long Length(object? value) => value switch
    {
        string s => PythonText.CodePointLength(s),
        IReadOnlyList<object?> list => list.Count,
        OrderedDictionary<string, object?> dict => dict.Count,
        Undefined => 0,
        JinjaNamespace => throw new JinjaException("object of type 'Namespace' has no len()"),
        _ => throw new JinjaException($"object of type '{PythonText.TypeName(value)}' has no len()"),
    };

    /// <summary>markupsafe's <c>escape</c>: &amp; &lt; &gt; " ' as HTML entities.</summary>
    private static string Escape(object? value) => PythonText.Str(value)
        .Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal)
        .Replace("\"", "&#34;", StringComparison.Ordinal).Replace("'", "&#39;", StringComparison.Ordinal);

    /// <summary>Jinja2's <c>title</c> filter (not Python's <c>str.title</c>): words begin after dashes, whitespace and opening brackets.</summary>
    private static string Title(string s)
    {
        var builder = new StringBuilder(s.Length);
        foreach (var part in WordBeginning().Split(s))
        {
            if (part.Length == 0) continue;
            builder.Append(char.ToUpperInvariant(part[0])).Append(part[1..].ToLowerInvariant());
        }
        return builder.ToString();
    }

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginning();

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordPattern();

    private static object? Indent(RenderContext context, object? value, CallArguments arguments)
    {
        arguments.Expect("indent", 3, "width", "first", "blank");
        var indention = arguments.Get(0, "width", 4L) switch
        {
            string text => text,
            var width => new string(' ', (int)Math.Clamp(JinjaMethods.Integer(width, "width"), 0, 256)),
        };
        var first = JinjaOperations.Truthy(arguments.Get(1, "first", false));
        var blank = JinjaOperations.Truthy(arguments.Get(2, "blank", false));
        var lines = PythonText.SplitLines(PythonText.Str(value) + "\n");
        string result;
        if (blank)
        {
            result = string.Join("\n" + indention, lines);
        }
        else
        {
            result = lines[0];
            if (lines.Count > 1) result += "\n" + string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indention + line : line));
        }
        return first ? indention + result : result;
    }

    private static double? ToFloat(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => d,
        string s when double.TryParse(s.Trim().Replace("_", "", StringComparison.Ordinal), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) => parsed,
        _ => null,
    };

    private static long? ToInteger(object? value, long radix)
    {
        switch (value)
        {
            case bool or long:
                return JinjaMethods.Integer(value, "value");
            case double d when !double.IsNaN(d) && !double.IsInfinity(d) && Math.Abs(d) < 9.2e18:
                return (long)Math.Truncate(d);
            case string s:
                var text = s.Trim().Replace("_", "", StringComparison.Ordinal);
                if (radix == 10 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed)) return parsed;
                if (radix is 2 or 8 or 16)
                {
                    try
                    {
                        var digits = text.Length > 2 && text[0] == '0' && char.IsLetter(text[1]) ? text[2..] : text;
                        return Convert.ToInt64(digits, (int)radix);
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                    {
                        return null;
                    }
                }
                return ToFloat(text) is { } f && !double.IsNaN(f) && !double.IsInfinity(f) && Math.Abs(f) < 9.2e18 ? (long)Math.Truncate(f) : null;
            default:
                return null;
        }
    }

    /// <summary>Jinja2's attribute getter for filters: dotted names look items up step by step (<c>"function.name"</c>).</summary>
    private static object? AttributeOf(object? item, object? attribute)
    {
        if (attribute is bool or long) return JinjaOperations.GetItem(item, attribute);
        if (attribute is not string path) throw new JinjaException("An attribute name must be a string or an integer.");
        foreach (var part in path.Split('.'))
        {
            item = int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                ? JinjaOperations.GetItem(item, (long)index)
                : JinjaOperations.GetItem(item, part);
        }
        return item;
    }

    private static object? Map(RenderContext context, object? value, CallArguments arguments)
    {
        var items = JinjaOperations.Iterate(value);
        if (arguments.Positional.Count == 0 && arguments.Keywords.ContainsKey("attribute"))
        {
            arguments.Expect("map", 0, "attribute", "default");
            var attribute = arguments.Keywords["attribute"];
            var hasDefault = arguments.Keywords.TryGetValue("default", out var fallback);
            return items.Select(item => AttributeOf(item, attribute) is Undefined && hasDefault ? fallback : AttributeOf(item, attribute)).ToList();
        }
        if (arguments.Positional.Count == 0 || arguments.Positional[0] is not string name)
            throw new JinjaException("map() needs a filter name or attribute=");
        if (!All.TryGetValue(name, out var filter)) throw new JinjaException($"No filter named '{name}'.");
        var rest = new CallArguments([.. arguments.Positional.Skip(1)], arguments.Keywords);
        return items.Select(item => filter(context, item, rest)).ToList();
    }

    private static object? Select(object? value, CallArguments arguments, bool attribute, bool keep)
    {
        var items = JinjaOperations.Iterate(value);
        var skip = attribute ? 1 : 0;
        if (attribute && arguments.Positional.Count == 0) throw new JinjaException("selectattr() and rejectattr() need an attribute name");
        var name = attribute ? arguments.Positional[0] : null;
        Func<object?, bool> predicate;
        if (arguments.Positional.Count <= skip)
        {
            predicate = JinjaOperations.Truthy;
        }
        else
        {
            var testName = arguments.Positional[skip] as string ?? throw new JinjaException("A test name must be a string.");
            if (!JinjaTests.All.TryGetValue(testName, out var test)) throw new JinjaException($"No test named '{testName}'.");
            var rest = new CallArguments([.. arguments.Positional.Skip(skip + 1)], arguments.Keywords);
            predicate = item => test(item, rest);
        }
        return items.Where(item => predicate(attribute ? AttributeOf(item, name) : item) == keep).ToList();
    }

    /// <summary>The sort key of a value: strings lower-cased unless the comparison is case-sensitive.</summary>
    private static object? SortKey(object? value, bool caseSensitive) => !caseSensitive && value is string s ? s.ToLowerInvariant() : value;

    private static object? Sort(RenderContext context, object? value, CallArguments arguments)
    {
        arguments.Expect("sort", 3, "reverse", "case_sensitive", "attribute");
        var reverse = JinjaOperations.Truthy(arguments.Get(0, "reverse", false));
        var caseSensitive = JinjaOperations.Truthy(arguments.Get(1, "case_sensitive", false));
        var attribute = arguments.Get(2, "attribute");
        var keyed = JinjaOperations.Iterate(value).Select(item => (Key: SortKey(attribute is null ? item : AttributeOf(item, attribute), caseSensitive), Item: item)).ToList();
        var sorted = StableSort(keyed, (x, y) => JinjaOperations.Compare(x.Key, y.Key, "<") * (reverse ? -1 : 1));
        return sorted.Select(p => p.Item).ToList();
    }

    private static object? DictSort(RenderContext context, object? value, CallArguments arguments)
    {
        arguments.Expect("dictsort", 3, "case_sensitive", "by", "reverse");
        if (value is not OrderedDictionary<string, object?> dict) throw new JinjaException("dictsort() needs a mapping");
        var caseSensitive = JinjaOperations.Truthy(arguments.Get(0, "case_sensitive", false));
        var byValue = arguments.Get(1, "by", "key") switch
        {
            "key" => false,
            "value" => true,
            _ => throw new JinjaException("You can only sort by either \"key\" or \"value\""),
        };
        var reverse = JinjaOperations.Truthy(arguments.Get(2, "reverse", false));
        var pairs = dict.Select(p => (Key: SortKey(byValue ? p.Value : p.Key, caseSensitive), Item: (object?)new object?[] { p.Key, p.Value })).ToList();
        return StableSort(pairs, (x, y) => JinjaOperations.Compare(x.Key, y.Key, "<") * (reverse ? -1 : 1)).Select(p => p.Item).ToList();
    }

    private static List<T> StableSort<T>(List<T> items, Comparison<T> comparison)
    {
        var indexed = items.Select((item, index) => (item, index)).ToList();
        indexed.Sort((x, y) => comparison(x.item, y.item) is var c && c != 0 ? c : x.index.CompareTo(y.index));
        return [.. indexed.Select(p => p.item)];
    }

    private static object? Unique(RenderContext context, object? value, CallArguments arguments)
    {
        arguments.Expect("unique", 2, "case_sensitive", "attribute");
        var caseSensitive = JinjaOperations.Truthy(arguments.Get(0, "case_sensitive", false));
        var attribute = arguments.Get(1, "attribute");
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in JinjaOperations.Iterate(value))
        {
            var key = SortKey(attribute is null ? item : AttributeOf(item, attribute), caseSensitive);
            if (seen.Any(s => JinjaOperations.AreEqual(s, key))) continue;
            seen.Add(key);
            result.Add(item);
        }
        return result;
    }

    private static object? MinMax(object? value, CallArguments arguments, string name, int sign)
    {
        arguments.Expect(name, 2, "case_sensitive", "attribute");
        var caseSensitive = JinjaOperations.Truthy(arguments.Get(0, "case_sensitive", false));
        var attribute = arguments.Get(1, "attribute");
        object? best = null;
        object? bestKey = null;
        var any = false;
        foreach (var item in JinjaOperations.Iterate(value))
        {
            var key = SortKey(attribute is null ? item : AttributeOf(item, attribute), caseSensitive);
            if (!any || JinjaOperations.Compare(key, bestKey, "<") * sign > 0)
            {
                best = item;
                bestKey = key;
                any = true;
            }
        }
        return any ? best : new Undefined($"No aggregated item, sequence was empty");
    }
}
