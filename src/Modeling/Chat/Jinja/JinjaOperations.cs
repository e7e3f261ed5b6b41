using System.Text;

namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// Python's semantics for what templates do with values: truth, equality, ordering, arithmetic, membership, iteration,
/// and Jinja2's attribute and item lookup (a missing key or attribute is <see cref="Undefined"/>, not an error; looking
/// into an undefined value is an error).
/// </summary>
internal static class JinjaOperations
{
    public static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        object?[] tuple => tuple.Length > 0,
        OrderedDictionary<string, object?> dict => dict.Count > 0,
        Undefined => false,
        _ => true,
    };

    private static bool IsNumber(object? value) => value is bool or long or double;

    private static long AsLong(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        _ => throw new InvalidOperationException("not an integer"),
    };

    private static double AsDouble(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => d,
        _ => throw new InvalidOperationException("not a number"),
    };

    /// <summary>Python's <c>==</c>: numbers across int, float and bool; lists, tuples and dicts by content.</summary>
    public static bool AreEqual(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? AsDouble(a) == AsDouble(b) : AsLong(a) == AsLong(b);
        switch (a)
        {
            case string s: return b is string t && s == t;
            case List<object?> list: return b is List<object?> other && SequenceEquals(list, other);
            case object?[] tuple: return b is object?[] otherTuple && SequenceEquals(tuple, otherTuple);
            case OrderedDictionary<string, object?> dict:
                if (b is not OrderedDictionary<string, object?> otherDict || otherDict.Count != dict.Count) return false;
                foreach (var (key, value) in dict)
                {
                    if (!otherDict.TryGetValue(key, out var otherValue) || !AreEqual(value, otherValue)) return false;
                }
                return true;
            case Undefined: return b is Undefined;
            default: return ReferenceEquals(a, b);
        }
    }

    private static bool SequenceEquals(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        if (a.Count != b.Count) return false;
        for (var i = 0; i < a.Count; i++) if (!AreEqual(a[i], b[i])) return false;
        return true;
    }

    /// <summary>Python's ordering for <c>&lt;</c>, <c>&lt;=</c>, <c>&gt;</c>, <c>&gt;=</c>: numbers, strings by code point, sequences element by element.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (a is Undefined ua) throw ua.Error();
        if (b is Undefined ub) throw ub.Error();
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
            {
                double x = AsDouble(a), y = AsDouble(b);
                if (double.IsNaN(x) || double.IsNaN(y)) return op is "<" or "<=" ? 1 : -1; // every comparison with NaN is false
                return x.CompareTo(y);
            }
            return AsLong(a).CompareTo(AsLong(b));
        }
        if (a is string s && b is string t) return CompareCodePoints(s, t);
        if (a is IReadOnlyList<object?> x1 && b is IReadOnlyList<object?> y1 && (a is List<object?>) == (b is List<object?>))
        {
            for (var i = 0; i < Math.Min(x1.Count, y1.Count); i++)
            {
                if (AreEqual(x1[i], y1[i])) continue;
                return Compare(x1[i], y1[i], op);
            }
            return x1.Count.CompareTo(y1.Count);
        }
        throw new JinjaException($"'{op}' not supported between instances of '{PythonText.TypeName(a)}' and '{PythonText.TypeName(b)}'.");
    }

    /// <summary>Ordinal comparison by Unicode code point (UTF-16 order differs only above U+FFFF).</summary>
    public static int CompareCodePoints(string a, string b)
    {
        var length = Math.Min(a.Length, b.Length);
        for (var i = 0; i < length; i++)
        {
            if (a[i] == b[i]) continue;
            // A surrogate (U+D800-DFFF, standing for a code point above U+FFFF) sorts after every BMP character.
            bool sa = char.IsSurrogate(a[i]), sb = char.IsSurrogate(b[i]);
            if (sa != sb) return sa ? 1 : -1;
            return a[i].CompareTo(b[i]);
        }
        return a.Length.CompareTo(b.Length);
    }

    public static object? Add(object? a, object? b)
    {
        CheckDefined(a, b);
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? AsDouble(a) + AsDouble(b) : (object)Checked(() => checked(AsLong(a) + AsLong(b)));
        return (a, b) switch
        {
            (string s, string t) => s + t,
            (List<object?> x, List<object?> y) => new List<object?>([.. x, .. y]),
            (object?[] x, object?[] y) => (object?[])[.. x, .. y],
            (string, _) => throw new JinjaException($"can only concatenate str (not \"{PythonText.TypeName(b)}\") to str"),
            (List<object?>, _) => throw new JinjaException($"can only concatenate list (not \"{PythonText.TypeName(b)}\") to list"),
            _ => throw Unsupported("+", a, b),
        };
    }

    public static object? Arithmetic(string op, object? a, object? b)
    {
        CheckDefined(a, b);
        if (op == "+") return Add(a, b);
        if (op == "*")
        {
            if (a is string s && b is bool or long) return Repeat(s, AsLong(b));
            if (b is string t && a is bool or long) return Repeat(t, AsLong(a));
            if (a is List<object?> list && b is bool or long) return RepeatList(list, AsLong(b));
            if (b is List<object?> list2 && a is bool or long) return RepeatList(list2, AsLong(a));
        }
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported(op, a, b);
        var floating = a is double || b is double;
        switch (op)
        {
            case "-":
                return floating ? AsDouble(a) - AsDouble(b) : (object)Checked(() => checked(AsLong(a) - AsLong(b)));
            case "*":
                return floating ? AsDouble(a) * AsDouble(b) : (object)Checked(() => checked(AsLong(a) * AsLong(b)));
            case "/":
                if (AsDouble(b) == 0) throw new JinjaException("division by zero");
                return AsDouble(a) / AsDouble(b);
            case "//":
                if (AsDouble(b) == 0) throw new JinjaException(floating ? "float floor division by zero" : "integer division or modulo by zero");
                if (floating) return Math.Floor(AsDouble(a) / AsDouble(b));
                return Checked(() => FloorDivide(AsLong(a), AsLong(b)));
            case "%":
                if (AsDouble(b) == 0) throw new JinjaException(floating ? "float modulo" : "integer division or modulo by zero");
                if (floating)
                {
                    double x = AsDouble(a), y = AsDouble(b);
                    var r = x % y;
                    return r != 0 && (r < 0) != (y < 0) ? r + y : r;
                }
                long n = AsLong(a), m = AsLong(b);
                var rest = n % m;
                return rest != 0 && (rest < 0) != (m < 0) ? rest + m : rest;
            case "**":
                if (!floating && AsLong(b) >= 0)
                {
                    long result = 1, bas = AsLong(a);
                    for (var e = AsLong(b); e > 0; e--) result = Checked(() => checked(result * bas));
                    return result;
                }
                return Math.Pow(AsDouble(a), AsDouble(b));
            default:
                throw new JinjaException($"Unknown operator '{op}'.");
        }
    }

    private static long FloorDivide(long a, long b)
    {
        var q = a / b;
        return (a % b != 0) && ((a < 0) != (b < 0)) ? q - 1 : q;
    }

    private static long Checked(Func<long> operation)
    {
        try
        {
            return operation();
        }
        catch (OverflowException)
        {
            throw new JinjaException("Integer overflow (the result is beyond 64 bits).");
        }
    }

    private static string Repeat(string s, long count)
    {
        if (count <= 0) return "";
        if (s.Length * count > 1 << 26) throw new JinjaException("The repeated string would be too long.");
        return new StringBuilder(s.Length * (int)count).Insert(0, s, (int)count).ToString();
    }

    private static List<object?> RepeatList(List<object?> list, long count)
    {
        if (list.Count * Math.Max(count, 0) > 1 << 24) throw new JinjaException("The repeated list would be too long.");
        var result = new List<object?>();
        for (var i = 0; i < count; i++) result.AddRange(list);
        return result;
    }

    public static object? Negate(object? value, bool negative) => value switch
    {
        Undefined u => throw u.Error(),
        bool or long => negative ? Checked(() => checked(-AsLong(value))) : AsLong(value),
        double d => (object)(negative ? -d : d),
        _ => throw new JinjaException($"bad operand type for unary {(negative ? '-' : '+')}: '{PythonText.TypeName(value)}'"),
    };

    private static void CheckDefined(object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Error();
        if (b is Undefined ub) throw ub.Error();
    }

    private static JinjaException Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand type(s) for {op}: '{PythonText.TypeName(a)}' and '{PythonText.TypeName(b)}'");

    /// <summary>Python's <c>item in container</c>.</summary>
    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string t
            ? s.Contains(t, StringComparison.Ordinal)
            : throw new JinjaException($"'in <string>' requires string as left operand, not {PythonText.TypeName(item)}"),
        OrderedDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        IReadOnlyList<object?> list => list.Any(x => AreEqual(x, item)),
        Undefined => false,
        JinjaNamespace => throw new JinjaException("argument of type 'Namespace' is not iterable"),
        _ => throw new JinjaException($"argument of type '{PythonText.TypeName(container)}' is not iterable"),
    };

    /// <summary>The items a for loop or a filter sees: a list's items, a string's characters, a dict's keys; nothing for undefined.</summary>
    public static IReadOnlyList<object?> Iterate(object? value) => value switch
    {
        IReadOnlyList<object?> list => list,
        string s => [.. PythonText.CodePoints(s)],
        OrderedDictionary<string, object?> dict => [.. dict.Keys],
        Undefined => [],
        _ => throw new JinjaException($"'{PythonText.TypeName(value)}' object is not iterable"),
    };

    /// <summary>Jinja2's <c>obj.name</c>: the attribute (a method of str, dict or list), else the item, else undefined.</summary>
    public static object? GetAttribute(object? owner, string name)
    {
        switch (owner)
        {
            case Undefined u:
                throw u.Error();
            case OrderedDictionary<string, object?> dict:
                if (JinjaMethods.Find(dict, name) is { } method) return method;
                return dict.TryGetValue(name, out var value) ? value : Undefined.Attribute(owner, name);
            case JinjaNamespace ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute : Undefined.Attribute(owner, name);
            case LoopState loop:
                return loop.Attribute(name);
            default:
                return (object?)JinjaMethods.Find(owner, name) ?? Undefined.Attribute(owner, name);
        }
    }

    /// <summary>Jinja2's <c>obj[key]</c>: the item, else the attribute named by a string key, else undefined.</summary>
    public static object? GetItem(object? owner, object? key)
    {
        if (owner is Undefined u) throw u.Error();
        if (key is Undefined uk) throw uk.Error();
        switch (owner)
        {
            case OrderedDictionary<string, object?> dict when key is string name && dict.TryGetValue(name, out var value):
                return value;
            case IReadOnlyList<object?> list when key is bool or long:
                var index = AsLong(key);
                if (index < 0) index += list.Count;
                return index >= 0 && index < list.Count ? list[(int)index] : Undefined.Item(owner, key);
            case string s when key is bool or long:
                var points = PythonText.CodePoints(s);
                var at = AsLong(key);
                if (at < 0) at += points.Count;
                return at >= 0 && at < points.Count ? points[(int)at] : Undefined.Item(owner, key);
        }
        return key is string attribute ? GetAttribute(owner, attribute) : Undefined.Item(owner, key);
    }

    /// <summary>Python's <c>obj[start:stop:step]</c> on a list, tuple or string; undefined for anything else.</summary>
    public static object? Slice(object? owner, object? start, object? stop, object? step)
    {
        if (owner is Undefined u) throw u.Error();
        long? Bound(object? value, string what) => value switch
        {
            null => null,
            bool or long => AsLong(value),
            Undefined missing => throw missing.Error(),
            _ => throw new JinjaException($"slice {what} must be an integer or None (got {PythonText.TypeName(value)})"),
        };
        var (first, last, stride) = (Bound(start, "start"), Bound(stop, "stop"), Bound(step, "step") ?? 1);
        if (stride == 0) throw new JinjaException("slice step cannot be zero");
        IReadOnlyList<object?>? items = owner switch
        {
            IReadOnlyList<object?> list => list,
            string s => [.. PythonText.CodePoints(s)],
            _ => null,
        };
        if (items is null) return new Undefined($"'{PythonText.TypeName(owner)} object' cannot be sliced");
        var picked = SliceIndices(items.Count, first, last, stride).Select(i => items[i]);
        return owner switch
        {
            string => string.Concat(picked.Cast<string>()),
            object?[] => picked.ToArray(),
            _ => picked.ToList(),
        };
    }

    private static IEnumerable<int> SliceIndices(int length, long? start, long? stop, long step)
    {
        long Clamp(long? value, long fallback, long low, long high)
        {
            if (value is not { } v) return fallback;
            if (v < 0) v += length;
            return Math.Clamp(v, low, high);
        }
        if (step > 0)
        {
            var from = Clamp(start, 0, 0, length);
            var to = Clamp(stop, length, 0, length);
            for (var i = from; i < to; i += step) yield return (int)i;
        }
        else
        {
            var from = Clamp(start, length - 1, -1, length - 1);
            var to = Clamp(stop, -1, -1, length - 1);
            for (var i = from; i > to; i += step) yield return (int)i;
        }
    }
}
