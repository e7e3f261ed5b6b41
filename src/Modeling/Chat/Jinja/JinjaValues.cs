namespace Babel.Modeling.Chat.Jinja;

// Runtime values follow Python's types: None is null, then bool, long (int), double (float), string (str),
// List<object?> (list), object?[] (tuple), OrderedDictionary<string, object?> (dict), and the classes below.

/// <summary>
/// Jinja2's default <c>Undefined</c>: a missing variable, key or attribute. It prints as nothing, is false, iterates as
/// empty and equals only another undefined value; using it in arithmetic, calling it or looking into it is an error.
/// </summary>
internal sealed class Undefined(string hint)
{
    /// <summary>Why the value is undefined, in Jinja2's words (e.g. <c>'x' is undefined</c>).</summary>
    public string Hint { get; } = hint;

    public static Undefined Variable(string name) => new($"'{name}' is undefined");

    public static Undefined Attribute(object? owner, string name) => new($"'{PythonText.TypeName(owner)} object' has no attribute '{name}'");

    public static Undefined Item(object? owner, object? key) => new($"'{PythonText.TypeName(owner)} object' has no item {PythonText.Repr(key)}");

    /// <summary>The error for using this value where a defined one is needed.</summary>
    public JinjaException Error() => new(Hint + ".");
}

/// <summary>Jinja2's <c>namespace()</c>: an object whose attributes <c>{% set ns.x = ... %}</c> may change from inside loops.</summary>
internal sealed class JinjaNamespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>A function a template can call: a global (<c>range</c>, <c>raise_exception</c>), a macro or a bound method.</summary>
internal sealed class JinjaCallable(string name, Func<CallArguments, object?> invoke)
{
    public string Name { get; } = name;

    public object? Invoke(CallArguments arguments) => invoke(arguments);
}

/// <summary>The positional and keyword arguments of a call, with Python-style binding by position or name.</summary>
internal sealed class CallArguments(IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> keywords)
{
    public static readonly IReadOnlyDictionary<string, object?> NoKeywords = new Dictionary<string, object?>();

    public IReadOnlyList<object?> Positional { get; } = positional;
    public IReadOnlyDictionary<string, object?> Keywords { get; } = keywords;

    /// <summary>The argument at <paramref name="index"/> or named <paramref name="name"/>, else <paramref name="fallback"/>.</summary>
    public object? Get(int index, string name, object? fallback = null)
    {
        if (index < Positional.Count)
        {
            if (Keywords.ContainsKey(name)) throw new JinjaException($"Got multiple values for argument '{name}'.");
            return Positional[index];
        }
        return Keywords.TryGetValue(name, out var value) ? value : fallback;
    }

    /// <summary>Whether the argument was passed at all.</summary>
    public bool Has(int index, string name) => index < Positional.Count || Keywords.ContainsKey(name);

    /// <summary>Refuses arguments beyond <paramref name="count"/> positional ones and the given names.</summary>
    public void Expect(string function, int count, params string[] names)
    {
        if (Positional.Count > count)
            throw new JinjaException($"{function}() takes at most {count} positional argument{(count == 1 ? "" : "s")} ({Positional.Count} given).");
        foreach (var name in Keywords.Keys)
        {
            if (!names.Contains(name, StringComparer.Ordinal))
                throw new JinjaException($"{function}() got an unexpected keyword argument '{name}'.");
        }
    }
}

/// <summary>The <c>loop</c> variable of a for loop: position, neighbours and <c>cycle</c>.</summary>
internal sealed class LoopState(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }

    public object? Attribute(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex0" => (long)(items.Count - Index0 - 1),
        "revindex" => (long)(items.Count - Index0),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new JinjaCallable("loop.cycle", arguments =>
        {
            if (arguments.Positional.Count == 0) throw new JinjaException("loop.cycle() needs at least one item.");
            return arguments.Positional[Index0 % arguments.Positional.Count];
        }),
        _ => Undefined.Attribute(this, name),
    };
}
