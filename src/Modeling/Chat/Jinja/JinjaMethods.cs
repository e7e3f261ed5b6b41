using System.Text;

namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// The Python methods templates call on values, which Hugging Face's sandbox allows (nothing that changes a value):
/// <c>str</c>'s strip, split, startswith, upper, replace and kin; <c>dict</c>'s items, keys, values and get;
/// <c>list</c>'s index and count.
/// </summary>
internal static class JinjaMethods
{
    /// <summary>The method <paramref name="name"/> of <paramref name="owner"/> bound to it, or null when it has none.</summary>
    public static JinjaCallable? Find(object? owner, string name) => owner switch
    {
        string s => StringMethod(s, name),
        OrderedDictionary<string, object?> dict => DictMethod(dict, name),
        IReadOnlyList<object?> list => ListMethod(list, name),
        _ => null,
    };

    private static JinjaCallable? StringMethod(string s, string name)
    {
        Func<CallArguments, object?>? body = name switch
        {
            "strip" or "lstrip" or "rstrip" => a =>
            {
                a.Expect(name, 1, "chars");
                var chars = a.Get(0, "chars") switch
                {
                    null => null,
                    string text => text,
                    var other => throw new JinjaException($"{name} arg must be None or str, not {PythonText.TypeName(other)}"),
                };
                return PythonText.Strip(s, chars, left: name != "rstrip", right: name != "lstrip");
            },
            "split" or "rsplit" => a =>
            {
                a.Expect(name, 2, "sep", "maxsplit");
                var separator = a.Get(0, "sep") switch
                {
                    null => null,
                    string text when text.Length == 0 => throw new JinjaException("empty separator"),
                    string text => text,
                    var other => throw new JinjaException($"must be str or None, not {PythonText.TypeName(other)}"),
                };
                var maxSplit = Integer(a.Get(1, "maxsplit", -1L), "maxsplit");
                return name == "split" ? Split(s, separator, maxSplit) : RightSplit(s, separator, maxSplit);
            },
            "splitlines" => a =>
            {
                a.Expect(name, 1, "keepends");
                return PythonText.SplitLines(s, JinjaOperations.Truthy(a.Get(0, "keepends", false))).Cast<object?>().ToList();
            },
            "startswith" or "endswith" => a =>
            {
                a.Expect(name, 1);
                if (a.Positional.Count == 0) throw new JinjaException($"{name}() takes at least 1 argument (0 given)");
                IEnumerable<object?> options = a.Positional[0] is object?[] tuple ? tuple : [a.Positional[0]];
                return options.Any(option => option is string affix
                    ? name == "startswith" ? s.StartsWith(affix, StringComparison.Ordinal) : s.EndsWith(affix, StringComparison.Ordinal)
                    : throw new JinjaException($"{name} first arg must be str or a tuple of str, not {PythonText.TypeName(option)}"));
            },
            "upper" => a => NoArguments(a, name, s.ToUpperInvariant()),
            "lower" => a => NoArguments(a, name, s.ToLowerInvariant()),
            "title" => a => NoArguments(a, name, Title(s)),
            "capitalize" => a => NoArguments(a, name, Capitalize(s)),
            "swapcase" => a => NoArguments(a, name, string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)))),
            "replace" => a =>
            {
                a.Expect(name, 3, "count");
                if (a.Positional.Count < 2 || a.Positional[0] is not string old || a.Positional[1] is not string replacement)
                    throw new JinjaException("replace() takes two strings (old, new)");
                return Replace(s, old, replacement, Integer(a.Get(2, "count", -1L), "count"));
            },
            "find" or "rfind" or "index" or "rindex" => a =>
            {
                a.Expect(name, 1);
                if (a.Positional.Count == 0 || a.Positional[0] is not string sub) throw new JinjaException($"{name}() takes a string");
                var at = name.StartsWith('r') ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
                if (at < 0 && name.EndsWith("index", StringComparison.Ordinal)) throw new JinjaException("substring not found");
                return at < 0 ? -1L : PythonText.CodePointLength(s[..at]);
            },
            "count" => a =>
            {
                a.Expect(name, 1);
                if (a.Positional.Count == 0 || a.Positional[0] is not string sub) throw new JinjaException("count() takes a string");
                if (sub.Length == 0) return (long)PythonText.CodePointLength(s) + 1;
                long count = 0;
                for (var at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal)) count++;
                return count;
            },
            "join" => a =>
            {
                a.Expect(name, 1);
                if (a.Positional.Count == 0) throw new JinjaException("join() takes exactly one argument (0 given)");
                var items = JinjaOperations.Iterate(a.Positional[0]);
                var parts = new List<string>(items.Count);
                for (var i = 0; i < items.Count; i++)
                {
                    parts.Add(items[i] as string
                        ?? throw new JinjaException($"sequence item {i}: expected str instance, {PythonText.TypeName(items[i])} found"));
                }
                return string.Join(s, parts);
            },
            "isdigit" => a => NoArguments(a, name, s.Length > 0 && s.All(char.IsDigit)),
            "isalpha" => a => NoArguments(a, name, s.Length > 0 && s.All(char.IsLetter)),
            "isalnum" => a => NoArguments(a, name, s.Length > 0 && s.All(char.IsLetterOrDigit)),
            "isspace" => a => NoArguments(a, name, s.Length > 0 && s.All(PythonText.IsSpace)),
            "islower" => a => NoArguments(a, name, s.Any(char.IsLower) && !s.Any(char.IsUpper)),
            "isupper" => a => NoArguments(a, name, s.Any(char.IsUpper) && !s.Any(char.IsLower)),
            _ => null,
        };
        return body is null ? null : new JinjaCallable("str." + name, body);
    }

    private static JinjaCallable? DictMethod(OrderedDictionary<string, object?> dict, string name)
    {
        Func<CallArguments, object?>? body = name switch
        {
            "items" => a => NoArguments(a, name, dict.Select(p => (object?)new object?[] { p.Key, p.Value }).ToList()),
            "keys" => a => NoArguments(a, name, dict.Keys.Cast<object?>().ToList()),
            "values" => a => NoArguments(a, name, dict.Values.ToList()),
            "get" => a =>
            {
                a.Expect(name, 2);
                if (a.Positional.Count == 0) throw new JinjaException("get expected at least 1 argument, got 0");
                return a.Positional[0] is string key && dict.TryGetValue(key, out var value) ? value : a.Get(1, "default");
            },
            _ => null,
        };
        return body is null ? null : new JinjaCallable("dict." + name, body);
    }

    private static JinjaCallable? ListMethod(IReadOnlyList<object?> list, string name)
    {
        Func<CallArguments, object?>? body = name switch
        {
            "index" => a =>
            {
                a.Expect(name, 1);
                for (var i = 0; i < list.Count; i++) if (a.Positional.Count > 0 && JinjaOperations.AreEqual(list[i], a.Positional[0])) return (long)i;
                throw new JinjaException("list.index(x): x not in list");
            },
            "count" => a =>
            {
                a.Expect(name, 1);
                return (long)list.Count(item => a.Positional.Count > 0 && JinjaOperations.AreEqual(item, a.Positional[0]));
            },
            _ => null,
        };
        return body is null ? null : new JinjaCallable((list is object?[] ? "tuple." : "list.") + name, body);
    }

    private static object? NoArguments(CallArguments arguments, string name, object? result)
    {
        if (arguments.Positional.Count > 0 || arguments.Keywords.Count > 0) throw new JinjaException($"{name}() takes no arguments");
        return result;
    }

    public static long Integer(object? value, string name) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        _ => throw new JinjaException($"'{name}' must be an integer (got {PythonText.TypeName(value)})"),
    };

    /// <summary>Python's <c>str.split(sep, maxsplit)</c>; a null separator splits at runs of whitespace and drops empty ends.</summary>
    public static List<object?> Split(string s, string? separator, long maxSplit)
    {
        var parts = new List<object?>();
        if (separator is not null)
        {
            var start = 0;
            while (maxSplit < 0 || parts.Count < maxSplit)
            {
                var at = s.IndexOf(separator, start, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Add(s[start..at]);
                start = at + separator.Length;
            }
            parts.Add(s[start..]);
            return parts;
        }
        var i = 0;
        while (true)
        {
            while (i < s.Length && PythonText.IsSpace(s[i])) i++;
            if (i >= s.Length) break;
            if (maxSplit >= 0 && parts.Count >= maxSplit)
            {
                parts.Add(s[i..]);
                break;
            }
            var end = i;
            while (end < s.Length && !PythonText.IsSpace(s[end])) end++;
            parts.Add(s[i..end]);
            i = end;
        }
        return parts;
    }

    private static List<object?> RightSplit(string s, string? separator, long maxSplit)
    {
        if (maxSplit < 0) return Split(s, separator, maxSplit);
        var parts = new List<object?>();
        if (separator is not null)
        {
            var end = s.Length;
            while (parts.Count < maxSplit)
            {
                var at = end - separator.Length < 0 ? -1 : s.LastIndexOf(separator, end - 1, end, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Add(s[(at + separator.Length)..end]);
                end = at;
            }
            parts.Add(s[..end]);
            parts.Reverse();
            return parts;
        }
        var j = s.Length;
        while (true)
        {
            while (j > 0 && PythonText.IsSpace(s[j - 1])) j--;
            if (j <= 0) break;
            if (parts.Count >= maxSplit)
            {
                parts.Add(s[..j]);
                break;
            }
            var start = j;
            while (start > 0 && !PythonText.IsSpace(s[start - 1])) start--;
            parts.Add(s[start..j]);
            j = start;
        }
        parts.Reverse();
        return parts;
    }

    /// <summary>Python's <c>str.replace(old, new, count)</c>, including an empty <paramref name="old"/> (inserted between characters).</summary>
    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0 && old.Length > 0) return s.Replace(old, replacement, StringComparison.Ordinal);
        var builder = new StringBuilder();
        if (old.Length == 0)
        {
            var points = PythonText.CodePoints(s);
            long done = 0;
            for (var i = 0; i <= points.Count; i++)
            {
                if (count < 0 || done < count)
                {
                    builder.Append(replacement);
                    done++;
                }
                if (i < points.Count) builder.Append(points[i]);
            }
            return builder.ToString();
        }
        var start = 0;
        for (long n = 0; n < count; n++)
        {
            var at = s.IndexOf(old, start, StringComparison.Ordinal);
            if (at < 0) break;
            builder.Append(s, start, at - start).Append(replacement);
            start = at + old.Length;
        }
        return builder.Append(s, start, s.Length - start).ToString();
    }

    /// <summary>Python's <c>str.title()</c>: a cased letter after an uncased character starts a word (so "they're" becomes "They'Re").</summary>
    public static string Title(string s)
    {
        var builder = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            var cased = char.IsUpper(c) || char.IsLower(c) || char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.TitlecaseLetter;
            builder.Append(!cased ? c : previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = cased;
        }
        return builder.ToString();
    }

    /// <summary>Python's <c>str.capitalize()</c>: the first character upper case, the rest lower case.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
}
