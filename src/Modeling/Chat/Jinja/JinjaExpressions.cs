namespace Babel.Modeling.Chat.Jinja;

/// <summary>An expression of the template; <see cref="Position"/> locates it in the template text for error messages.</summary>
internal abstract class Expression(int position)
{
    public int Position { get; } = position;

    /// <summary>Evaluates the expression; an error without a place gets this expression's.</summary>
    public object? Evaluate(RenderContext context)
    {
        try
        {
            return EvaluateCore(context);
        }
        catch (JinjaException e) when (e.Position < 0)
        {
            throw e.At(Position);
        }
    }

    protected abstract object? EvaluateCore(RenderContext context);
}

internal sealed class Literal(int position, object? value) : Expression(position)
{
    public object? Value { get; } = value;

    protected override object? EvaluateCore(RenderContext context) => Value;
}

internal sealed class NameExpression(int position, string name) : Expression(position)
{
    public string Name { get; } = name;

    protected override object? EvaluateCore(RenderContext context) => context.Scope.Lookup(Name);
}

internal sealed class ListExpression(int position, IReadOnlyList<Expression> items, bool tuple) : Expression(position)
{
    public IReadOnlyList<Expression> Items { get; } = items;
    public bool IsTuple { get; } = tuple;

    protected override object? EvaluateCore(RenderContext context)
    {
        var values = Items.Select(item => item.Evaluate(context));
        return IsTuple ? values.ToArray() : values.ToList();
    }
}

internal sealed class DictExpression(int position, IReadOnlyList<(Expression Key, Expression Value)> pairs) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context)
    {
        var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in pairs)
        {
            var name = key.Evaluate(context) as string ?? throw new JinjaException("Only string keys are supported in dict literals.");
            dict[name] = value.Evaluate(context);
        }
        return dict;
    }
}

internal sealed class AttributeExpression(int position, Expression owner, string name) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) => JinjaOperations.GetAttribute(owner.Evaluate(context), name);
}

internal sealed class ItemExpression(int position, Expression owner, Expression key) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) => JinjaOperations.GetItem(owner.Evaluate(context), key.Evaluate(context));
}

internal sealed class SliceExpression(int position, Expression owner, Expression? start, Expression? stop, Expression? step) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) =>
        JinjaOperations.Slice(owner.Evaluate(context), start?.Evaluate(context), stop?.Evaluate(context), step?.Evaluate(context));
}

/// <summary>Arguments as written at a call, filter or test: positional expressions, then name = expression.</summary>
internal sealed record ArgumentList(IReadOnlyList<Expression> Positional, IReadOnlyList<(string Name, Expression Value)> Keywords)
{
    public static readonly ArgumentList Empty = new([], []);

    public CallArguments Evaluate(RenderContext context, object? first = null, bool withFirst = false)
    {
        var positional = new List<object?>(Positional.Count + 1);
        if (withFirst) positional.Add(first);
        foreach (var expression in Positional) positional.Add(expression.Evaluate(context));
        var keywords = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in Keywords) keywords[name] = value.Evaluate(context);
        return new CallArguments(positional, keywords);
    }
}

internal sealed class CallExpression(int position, Expression callee, ArgumentList arguments) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context)
    {
        var function = callee.Evaluate(context);
        return function switch
        {
            JinjaCallable callable => callable.Invoke(arguments.Evaluate(context)),
            Undefined u => throw u.Error(),
            _ => throw new JinjaException($"'{PythonText.TypeName(function)}' object is not callable"),
        };
    }
}

internal sealed class FilterExpression(int position, Expression? value, string name, JinjaFilter filter, ArgumentList arguments) : Expression(position)
{
    public string Name { get; } = name;

    /// <summary>Applies the filter to <paramref name="input"/> (the value of a filter block, when <c>value</c> is null).</summary>
    public object? Apply(RenderContext context, object? input) => filter(context, input, arguments.Evaluate(context));

    protected override object? EvaluateCore(RenderContext context) =>
        Apply(context, value is null ? throw new JinjaException("A filter needs a value.") : value.Evaluate(context));
}

internal sealed class TestExpression(int position, Expression value, JinjaTest test, ArgumentList arguments, bool negated) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context)
    {
        var result = test(value.Evaluate(context), arguments.Evaluate(context));
        return negated ? !result : result;
    }
}

internal sealed class NotExpression(int position, Expression operand) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) => !JinjaOperations.Truthy(operand.Evaluate(context));
}

internal sealed class NegateExpression(int position, Expression operand, bool negative) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) => JinjaOperations.Negate(operand.Evaluate(context), negative);
}

/// <summary><c>and</c> / <c>or</c>: Python's short-circuit, returning the deciding operand itself.</summary>
internal sealed class LogicalExpression(int position, Expression left, Expression right, bool and) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context)
    {
        var first = left.Evaluate(context);
        return JinjaOperations.Truthy(first) == and ? right.Evaluate(context) : first;
    }
}

internal sealed class ArithmeticExpression(int position, string op, Expression left, Expression right) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) =>
        JinjaOperations.Arithmetic(op, left.Evaluate(context), right.Evaluate(context));
}

/// <summary><c>a ~ b ~ c</c>: every operand as text (undefined as nothing), joined.</summary>
internal sealed class ConcatExpression(int position, IReadOnlyList<Expression> operands) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) => string.Concat(operands.Select(o => PythonText.Str(o.Evaluate(context))));
}

/// <summary>A comparison chain such as <c>a &lt; b &lt;= c</c> or <c>x not in y</c>, evaluated as Python does.</summary>
internal sealed class CompareExpression(int position, Expression first, IReadOnlyList<(string Op, Expression Operand)> rest) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context)
    {
        var left = first.Evaluate(context);
        foreach (var (op, operand) in rest)
        {
            var right = operand.Evaluate(context);
            var holds = op switch
            {
                "==" => JinjaOperations.AreEqual(left, right),
                "!=" => !JinjaOperations.AreEqual(left, right),
                "in" => JinjaOperations.Contains(right, left),
                "notin" => !JinjaOperations.Contains(right, left),
                "<" => JinjaOperations.Compare(left, right, op) < 0,
                "<=" => JinjaOperations.Compare(left, right, op) <= 0,
                ">" => JinjaOperations.Compare(left, right, op) > 0,
                ">=" => JinjaOperations.Compare(left, right, op) >= 0,
                _ => throw new JinjaException($"Unknown comparison '{op}'."),
            };
            if (!holds) return false;
            left = right;
        }
        return true;
    }
}

/// <summary><c>a if condition else b</c>; without <c>else</c>, a false condition gives an undefined value.</summary>
internal sealed class ConditionalExpression(int position, Expression condition, Expression then, Expression? otherwise) : Expression(position)
{
    protected override object? EvaluateCore(RenderContext context) =>
        JinjaOperations.Truthy(condition.Evaluate(context))
            ? then.Evaluate(context)
            : otherwise is null ? new Undefined("the condition of an inline if without else was false") : otherwise.Evaluate(context);
}
