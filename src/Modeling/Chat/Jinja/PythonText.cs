using System.Globalization;
using System.Text;

namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// Text as Python writes it, which is what a Jinja2 template prints: <c>str()</c> and <c>repr()</c> of values, floats in
/// their shortest round-trip form, <c>json.dumps</c>, and strings measured in code points (not UTF-16 units).
/// </summary>
internal static class PythonText
{
    /// <summary>Python's <c>str(value)</c>; an undefined value prints as nothing, as Jinja2's Undefined does.</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    /// <summary>Python's <c>repr(value)</c>.</summary>
    public static string Repr(object? value)
    {
        var builder = new StringBuilder();
        AppendRepr(builder, value);
        return builder.ToString();
    }

    private static void AppendRepr(StringBuilder builder, object? value)
    {
        switch (value)
        {
            case null: builder.Append("None"); break;
            case bool b: builder.Append(b ? "True" : "False"); break;
            case long l: builder.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: builder.Append(FloatRepr(d)); break;
            case string s: AppendStringRepr(builder, s); break;
            case List<object?> list:
                builder.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) builder.Append(", ");
                    AppendRepr(builder, list[i]);
                }
                builder.Append(']');
                break;
            case object?[] tuple:
                builder.Append('(');
                for (var i = 0; i < tuple.Length; i++)
                {
                    if (i > 0) builder.Append(", ");
                    AppendRepr(builder, tuple[i]);
                }
                builder.Append(tuple.Length == 1 ? ",)" : ")");
                break;
            case OrderedDictionary<string, object?> dict:
                builder.Append('{');
                var first = true;
                foreach (var (key, item) in dict)
                {
                    if (!first) builder.Append(", ");
                    first = false;
                    AppendStringRepr(builder, key);
                    builder.Append(": ");
                    AppendRepr(builder, item);
                }
                builder.Append('}');
                break;
            case Undefined: builder.Append("Undefined"); break;
            case JinjaNamespace ns:
                builder.Append("<Namespace {");
                var firstAttribute = true;
                foreach (var (key, item) in ns.Attributes)
                {
                    if (!firstAttribute) builder.Append(", ");
                    firstAttribute = false;
                    AppendStringRepr(builder, key);
                    builder.Append(": ");
                    AppendRepr(builder, item);
                }
                builder.Append("}>");
                break;
            case JinjaCallable callable: builder.Append("<function ").Append(callable.Name).Append('>'); break;
            case LoopState: builder.Append("<LoopContext>"); break;
            default: builder.Append(value); break;
        }
    }

    /// <summary>Python's repr of a string: single quotes unless the text holds one and no double quote; escapes for the unprintable.</summary>
    private static void AppendStringRepr(StringBuilder builder, string s)
    {
        var quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        builder.Append(quote);
        foreach (var rune in s.EnumerateRunes())
        {
            var c = rune.Value;
            if (c == quote || c == '\\') builder.Append('\\').Append((char)c);
            else if (c == '\n') builder.Append("\\n");
            else if (c == '\r') builder.Append("\\r");
            else if (c == '\t') builder.Append("\\t");
            else if (IsPrintable(rune)) builder.Append(rune.ToString());
            else if (c <= 0xff) builder.Append(CultureInfo.InvariantCulture, $"\\x{c:x2}");
            else if (c <= 0xffff) builder.Append(CultureInfo.InvariantCulture, $"\\u{c:x4}");
            else builder.Append(CultureInfo.InvariantCulture, $"\\U{c:x8}");
        }
        builder.Append(quote);
    }

    /// <summary>Python's <c>str.isprintable</c> for one character: not a control, format, surrogate, private-use, unassigned or separator other than space.</summary>
    private static bool IsPrintable(Rune rune)
    {
        if (rune.Value == ' ') return true;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                or UnicodeCategory.OtherNotAssigned or UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator
                or UnicodeCategory.ParagraphSeparator => false,
            _ => true,
        };
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest digits that round-trip, exponent form below 1e-4 or from 1e16.</summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";
        var (negative, digits, point) = ShortestDigits(value);
        var builder = new StringBuilder();
        if (negative) builder.Append('-');
        if (point <= -4 || point > 16)
        {
            builder.Append(digits[0]);
            if (digits.Length > 1) builder.Append('.').Append(digits, 1, digits.Length - 1);
            var exponent = point - 1;
            builder.Append('e').Append(exponent < 0 ? '-' : '+').Append(Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (point <= 0)
        {
            builder.Append("0.").Append('0', -point).Append(digits);
        }
        else if (point >= digits.Length)
        {
            builder.Append(digits).Append('0', point - digits.Length).Append(".0");
        }
        else
        {
            builder.Append(digits, 0, point).Append('.').Append(digits, point, digits.Length - point);
        }
        return builder.ToString();
    }

    /// <summary>The shortest round-trip decimal digits of a finite non-zero value and where its decimal point goes (value = 0.DIGITS × 10^point).</summary>
    private static (bool Negative, string Digits, int Point) ShortestDigits(double value)
    {
        // .NET's "R" is the shortest round-trip form, as Python's repr; only the layout differs.
        var text = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        var exponent = 0;
        var e = text.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(text.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var integer = dot < 0 ? text : text[..dot];
        var fraction = dot < 0 ? "" : text[(dot + 1)..];
        var digits = integer + fraction;
        var point = integer.Length + exponent;
        var leading = 0;
        while (leading < digits.Length - 1 && digits[leading] == '0') leading++;
        digits = digits[leading..];
        point -= leading;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        return (value < 0, digits, point);
    }

    /// <summary>Python's <c>str.isspace</c> for one UTF-16 unit (what <c>strip()</c> and the lexer's <c>\s</c> remove).</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>Python's <c>str.strip(chars)</c>, <c>lstrip</c> or <c>rstrip</c>; null chars strip whitespace.</summary>
    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        Func<char, bool> strip = chars is null ? IsSpace : c => chars.Contains(c, StringComparison.Ordinal);
        int start = 0, end = s.Length;
        if (left) while (start < end && strip(s[start])) start++;
        if (right) while (end > start && strip(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>Length in code points, as Python's <c>len(str)</c>.</summary>
    public static int CodePointLength(string s)
    {
        var surrogates = 0;
        foreach (var c in s) if (char.IsLowSurrogate(c)) surrogates++;
        return s.Length - surrogates;
    }

    /// <summary>The string's code points, each as a string (the items of Python's <c>list(str)</c>).</summary>
    public static List<string> CodePoints(string s)
    {
        var points = new List<string>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                points.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                points.Add(s[i].ToString());
            }
        }
        return points;
    }

    /// <summary>Python's <c>str.splitlines()</c>: every line boundary Python knows, the boundaries dropped unless kept.</summary>
    public static List<string> SplitLines(string s, bool keepEnds = false)
    {
        var lines = new List<string>();
        var start = 0;
        var i = 0;
        while (i < s.Length)
        {
            var c = s[i];
            var width = c == '\r' && i + 1 < s.Length && s[i + 1] == '\n' ? 2
                : c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029' ? 1 : 0;
            if (width == 0)
            {
                i++;
                continue;
            }
            lines.Add(s[start..(keepEnds ? i + width : i)]);
            i += width;
            start = i;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    /// <summary>
    /// <c>json.dumps(value, ensure_ascii, indent, separators, sort_keys)</c> as transformers' <c>tojson</c> filter calls it.
    /// </summary>
    /// <exception cref="JinjaException">The value holds something JSON cannot represent (an undefined value, a namespace, a function).</exception>
    public static string Json(object? value, bool ensureAscii = false, string? indent = null, (string Item, string Key)? separators = null, bool sortKeys = false)
    {
        var (item, key) = separators ?? (indent is null ? (", ", ": ") : (",", ": "));
        var builder = new StringBuilder();
        AppendJson(builder, value, ensureAscii, indent, item, key, sortKeys, 0);
        return builder.ToString();
    }

    private static void AppendJson(StringBuilder builder, object? value, bool ensureAscii, string? indent, string item, string key, bool sortKeys, int depth)
    {
        if (depth > 512) throw new JinjaException("The value is nested too deeply to write as JSON.");
        switch (value)
        {
            case null: builder.Append("null"); break;
            case bool b: builder.Append(b ? "true" : "false"); break;
            case long l: builder.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                builder.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : FloatRepr(d));
                break;
            case string s: AppendJsonString(builder, s, ensureAscii); break;
            case IReadOnlyList<object?> list:
                if (list.Count == 0)
                {
                    builder.Append("[]");
                    break;
                }
                builder.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) builder.Append(item);
                    NewLine(builder, indent, depth + 1);
                    AppendJson(builder, list[i], ensureAscii, indent, item, key, sortKeys, depth + 1);
                }
                NewLine(builder, indent, depth);
                builder.Append(']');
                break;
            case OrderedDictionary<string, object?> dict:
                if (dict.Count == 0)
                {
                    builder.Append("{}");
                    break;
                }
                builder.Append('{');
                IEnumerable<KeyValuePair<string, object?>> pairs = sortKeys ? dict.OrderBy(p => p.Key, StringComparer.Ordinal) : dict;
                var first = true;
                foreach (var (name, member) in pairs)
                {
                    if (!first) builder.Append(item);
                    first = false;
                    NewLine(builder, indent, depth + 1);
                    AppendJsonString(builder, name, ensureAscii);
                    builder.Append(key);
                    AppendJson(builder, member, ensureAscii, indent, item, key, sortKeys, depth + 1);
                }
                NewLine(builder, indent, depth);
                builder.Append('}');
                break;
            default:
                throw new JinjaException($"Object of type {TypeName(value)} is not JSON serializable.");
        }
    }

    private static void NewLine(StringBuilder builder, string? indent, int depth)
    {
        if (indent is null) return;
        builder.Append('\n');
        for (var i = 0; i < depth; i++) builder.Append(indent);
    }

    private static void AppendJsonString(StringBuilder builder, string s, bool ensureAscii)
    {
        builder.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': builder.Append("\\\""); break;
                case '\\': builder.Append("\\\\"); break;
                case '\n': builder.Append("\\n"); break;
                case '\r': builder.Append("\\r"); break;
                case '\t': builder.Append("\\t"); break;
                case '\b': builder.Append("\\b"); break;
                case '\f': builder.Append("\\f"); break;
                default:
                    // UTF-16 units are what Python escapes too: a character above U+FFFF becomes its surrogate pair.
                    if (c < ' ' || (ensureAscii && c > '\x7e')) builder.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
                    else builder.Append(c);
                    break;
            }
        }
        builder.Append('"');
    }

    /// <summary>The Python type name of a value, for error messages.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        OrderedDictionary<string, object?> => "dict",
        Undefined => "Undefined",
        JinjaNamespace => "Namespace",
        JinjaCallable => "function",
        LoopState => "LoopContext",
        _ => value.GetType().Name,
    };
}
