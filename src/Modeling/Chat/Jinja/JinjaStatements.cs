using System.Text;

namespace Babel.Modeling.Chat.Jinja;

/// <summary>How a statement ended: normally, or by <c>{% break %}</c> / <c>{% continue %}</c> for the innermost loop.</summary>
internal enum Flow
{
    Normal,
    Break,
    Continue,
}

/// <summary>A statement of the template (text, output, or a tag) that writes to the output.</summary>
internal abstract class Statement(int position)
{
    public int Position { get; } = position;

    public abstract Flow Render(RenderContext context, StringBuilder output);

    /// <summary>Renders <paramref name="body"/> in order, stopping at a break or continue.</summary>
    public static Flow RenderAll(IReadOnlyList<Statement> body, RenderContext context, StringBuilder output)
    {
        foreach (var statement in body)
        {
            var flow = statement.Render(context, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }
}

internal sealed class TextStatement(int position, string text) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        context.Write(output, text);
        return Flow.Normal;
    }
}

/// <summary><c>{{ expression }}</c>: the value as Python's <c>str()</c> writes it (undefined as nothing, None as "None").</summary>
internal sealed class OutputStatement(int position, Expression expression) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        context.Write(output, PythonText.Str(expression.Evaluate(context)));
        return Flow.Normal;
    }
}

internal sealed class IfStatement(int position, IReadOnlyList<(Expression Condition, IReadOnlyList<Statement> Body)> branches, IReadOnlyList<Statement> otherwise)
    : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        foreach (var (condition, body) in branches)
        {
            if (JinjaOperations.Truthy(condition.Evaluate(context))) return RenderAll(body, context, output);
        }
        return RenderAll(otherwise, context, output);
    }
}

/// <summary>
/// <c>{% for target in items if condition %}...{% else %}...{% endfor %}</c>. The condition filters the items before the
/// loop counts them; each iteration runs in its own scope (what it sets is gone afterwards, as in Jinja2); the else
/// body runs when no item was left.
/// </summary>
internal sealed class ForStatement(int position, AssignTarget target, Expression items, Expression? condition, IReadOnlyList<Statement> body, IReadOnlyList<Statement> otherwise)
    : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        IReadOnlyList<object?> all;
        try
        {
            all = JinjaOperations.Iterate(items.Evaluate(context));
        }
        catch (JinjaException e) when (e.Position < 0)
        {
            throw e.At(items.Position);
        }
        var outer = context.Scope;
        var kept = all;
        if (condition is not null)
        {
            var filtered = new List<object?>();
            foreach (var item in all)
            {
                context.Scope = new Scope(outer);
                try
                {
                    target.Assign(context, item);
                    if (JinjaOperations.Truthy(condition.Evaluate(context))) filtered.Add(item);
                }
                finally
                {
                    context.Scope = outer;
                }
            }
            kept = filtered;
        }
        if (kept.Count == 0) return RenderAll(otherwise, context, output);
        var loop = new LoopState(kept);
        try
        {
            for (var i = 0; i < kept.Count; i++)
            {
                loop.Index0 = i;
                context.Scope = new Scope(outer);
                context.Scope.Set("loop", loop);
                target.Assign(context, kept[i]);
                if (RenderAll(body, context, output) == Flow.Break) break;
            }
        }
        finally
        {
            context.Scope = outer;
        }
        return Flow.Normal;
    }
}

internal sealed class SetStatement(int position, AssignTarget target, Expression value) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        target.Assign(context, value.Evaluate(context));
        return Flow.Normal;
    }
}

/// <summary><c>{% set name %}...{% endset %}</c>: the rendered body (through optional filters) becomes the value.</summary>
internal sealed class SetBlockStatement(int position, AssignTarget target, IReadOnlyList<FilterExpression> filters, IReadOnlyList<Statement> body) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        var captured = new StringBuilder();
        RenderAll(body, context, captured);
        object? value = captured.ToString();
        foreach (var filter in filters) value = filter.Apply(context, value);
        target.Assign(context, value);
        return Flow.Normal;
    }
}

/// <summary><c>{% filter name %}...{% endfilter %}</c>: the rendered body through the filters.</summary>
internal sealed class FilterBlockStatement(int position, IReadOnlyList<FilterExpression> filters, IReadOnlyList<Statement> body) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        var captured = new StringBuilder();
        var flow = RenderAll(body, context, captured);
        object? value = captured.ToString();
        foreach (var filter in filters) value = filter.Apply(context, value);
        context.Write(output, PythonText.Str(value));
        return flow;
    }
}

/// <summary><c>{% with a = 1 %}...{% endwith %}</c>: the body in a scope of its own.</summary>
internal sealed class WithStatement(int position, IReadOnlyList<(AssignTarget Target, Expression Value)> assignments, IReadOnlyList<Statement> body) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output)
    {
        var outer = context.Scope;
        var values = assignments.Select(a => a.Value.Evaluate(context)).ToList();
        context.Scope = new Scope(outer);
        try
        {
            for (var i = 0; i < values.Count; i++) assignments[i].Target.Assign(context, values[i]);
            return RenderAll(body, context, output);
        }
        finally
        {
            context.Scope = outer;
        }
    }
}

/// <summary>A block that only groups its body (transformers' <c>{% generation %}</c> marks assistant text this way).</summary>
internal sealed class BlockStatement(int position, IReadOnlyList<Statement> body) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output) => RenderAll(body, context, output);
}

internal sealed class LoopControlStatement(int position, Flow flow) : Statement(position)
{
    public override Flow Render(RenderContext context, StringBuilder output) => flow;
}

/// <summary>
/// <c>{% macro name(a, b=default) %}...{% endmacro %}</c>: defines a function in the current scope that renders its
/// body in a scope of its own (seeing the scope it was defined in) and returns the text.
/// </summary>
internal sealed class MacroStatement(int position, string name, IReadOnlyList<(string Name, Expression? Default)> parameters, IReadOnlyList<Statement> body)
    : Statement(position)
{
    private const int MaxDepth = 200;

    public override Flow Render(RenderContext context, StringBuilder output)
    {
        var defined = context.Scope;
        context.Scope.Set(name, new JinjaCallable(name, arguments => Call(context, defined, arguments)));
        return Flow.Normal;
    }

    private string Call(RenderContext context, Scope defined, CallArguments arguments)
    {
        if (arguments.Positional.Count > parameters.Count)
            throw new JinjaException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
        if (context.Depth >= MaxDepth) throw new JinjaException($"macro '{name}' recursed more than {MaxDepth} levels deep");
        var outer = context.Scope;
        context.Scope = new Scope(defined);
        context.Depth++;
        try
        {
            foreach (var keyword in arguments.Keywords.Keys)
            {
                if (!parameters.Any(p => p.Name == keyword)) throw new JinjaException($"macro '{name}' takes no keyword argument '{keyword}'");
            }
            for (var i = 0; i < parameters.Count; i++)
            {
                var (parameter, fallback) = parameters[i];
                var value = i < arguments.Positional.Count ? arguments.Positional[i]
                    : arguments.Keywords.TryGetValue(parameter, out var given) ? given
                    : fallback is not null ? fallback.Evaluate(context)
                    : new Undefined($"parameter '{parameter}' was not provided");
                context.Scope.Set(parameter, value);
            }
            var output = new StringBuilder();
            RenderAll(body, context, output);
            return output.ToString();
        }
        finally
        {
            context.Depth--;
            context.Scope = outer;
        }
    }
}

/// <summary>What <c>set</c> and <c>for</c> assign to: a name, a namespace attribute (<c>ns.x</c>), or a tuple of targets.</summary>
internal abstract class AssignTarget(int position)
{
    public int Position { get; } = position;

    public abstract void Assign(RenderContext context, object? value);
}

internal sealed class NameTarget(int position, string name) : AssignTarget(position)
{
    public override void Assign(RenderContext context, object? value) => context.Scope.Set(name, value);
}

internal sealed class NamespaceTarget(int position, string name, string attribute) : AssignTarget(position)
{
    public override void Assign(RenderContext context, object? value)
    {
        if (context.Scope.Lookup(name) is not JinjaNamespace ns)
            throw new JinjaException("cannot assign attribute on non-namespace object", Position);
        ns.Attributes[attribute] = value;
    }
}

internal sealed class TupleTarget(int position, IReadOnlyList<AssignTarget> targets) : AssignTarget(position)
{
    public override void Assign(RenderContext context, object? value)
    {
        IReadOnlyList<object?> items;
        try
        {
            items = JinjaOperations.Iterate(value);
        }
        catch (JinjaException e)
        {
            throw new JinjaException($"cannot unpack a value: {e.Message}", Position);
        }
        if (items.Count != targets.Count)
        {
            throw new JinjaException(items.Count > targets.Count
                ? $"too many values to unpack (expected {targets.Count})"
                : $"not enough values to unpack (expected {targets.Count}, got {items.Count})", Position);
        }
        for (var i = 0; i < targets.Count; i++) targets[i].Assign(context, items[i]);
    }
}

/// <summary>Variables of one level: the template, a loop iteration, a macro call; lookups fall through to the outer levels.</summary>
internal sealed class Scope(Scope? parent, IReadOnlyDictionary<string, object?>? globals = null)
{
    private readonly Dictionary<string, object?> _variables = new(StringComparer.Ordinal);

    public object? Lookup(string name)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
        {
            if (scope._variables.TryGetValue(name, out var value)) return value;
            if (scope.Globals is not null && scope.Globals.TryGetValue(name, out var global)) return global;
        }
        return Undefined.Variable(name);
    }

    public void Set(string name, object? value) => _variables[name] = value;

    private Scope? Parent { get; } = parent;
    private IReadOnlyDictionary<string, object?>? Globals { get; } = globals;
}

/// <summary>The state of one render: the current scope, the clock for <c>strftime_now</c>, and limits on depth and output.</summary>
internal sealed class RenderContext(Scope scope, TimeProvider clock, int maxOutputChars)
{
    public Scope Scope { get; set; } = scope;
    public TimeProvider Clock { get; } = clock;
    /// <summary>Macro calls in progress (recursion is bounded).</summary>
    public int Depth { get; set; }

    private long _written;

    public void Write(StringBuilder output, string text)
    {
        _written += text.Length;
        if (_written > maxOutputChars) throw new JinjaException($"The template wrote more than {maxOutputChars} characters.");
        output.Append(text);
    }
}
