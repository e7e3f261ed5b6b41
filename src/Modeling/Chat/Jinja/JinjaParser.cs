namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// Parses tokens into statements and expressions with Jinja2's grammar and operator precedence (loosest first):
/// <c>x if c else y</c>, <c>or</c>, <c>and</c>, <c>not</c>, comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>,
/// <c>* / // %</c>, <c>**</c>, unary <c>- +</c>, then postfix <c>.attr</c>, <c>[item]</c>, <c>[a:b:c]</c>, <c>(call)</c>,
/// <c>|filter</c> and <c>is test</c>. Filters and tests are looked up here, so an unknown one fails when the template
/// is loaded, as in Jinja2.
/// </summary>
internal sealed class JinjaParser
{
    private const int MaxDepth = 200;

    private readonly List<Token> _tokens;
    private int _index;
    private int _loops;
    private int _depth;

    private JinjaParser(List<Token> tokens) => _tokens = tokens;

    public static List<Statement> Parse(List<Token> tokens)
    {
        var parser = new JinjaParser(tokens);
        var (body, end) = parser.Subparse([], opener: null);
        if (end is not null) throw new JinjaSyntaxException($"Encountered unknown tag '{end.Text}'.", end.Position);
        return body;
    }

    private Token Current => _tokens[_index];

    private Token Peek(int ahead = 1) => _tokens[Math.Min(_index + ahead, _tokens.Count - 1)];

    private Token Next() => _tokens[_index++];

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op)) return false;
        _index++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        _index++;
        return true;
    }

    private Token Expect(TokenKind kind, string? text = null)
    {
        var token = Current;
        if (token.Kind != kind || (text is not null && token.Text != text))
        {
            var wanted = text is not null ? $"'{text}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "the end of the tag ('%}')",
                TokenKind.VariableEnd => "the end of the print tag ('}}')",
                _ => kind.ToString(),
            };
            throw new JinjaSyntaxException($"Expected {wanted}, got {Describe(token)}.", token.Position);
        }
        _index++;
        return token;
    }

    private static string Describe(Token token) => token.Kind switch
    {
        TokenKind.End => "the end of the template",
        TokenKind.BlockEnd => "the end of the tag",
        TokenKind.VariableEnd => "the end of the print tag",
        TokenKind.Data => "template text",
        _ => $"'{token.Text}'",
    };

    /// <summary>
    /// Statements up to a <c>{% name %}</c> tag whose name is one of <paramref name="ends"/>; returns them with that name's
    /// token (the tag's <c>{%</c> and name consumed), or a null token at the end of the template.
    /// </summary>
    private (List<Statement> Body, Token? End) Subparse(string[] ends, Token? opener)
    {
        var body = new List<Statement>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.End:
                    if (opener is not null)
                    {
                        throw new JinjaSyntaxException(
                            $"Unexpected end of template: the '{opener.Text}' tag is never closed (expected {string.Join(" or ", ends.Select(e => $"'{e}'"))}).",
                            opener.Position);
                    }
                    return (body, null);
                case TokenKind.Data:
                    _index++;
                    body.Add(new TextStatement(token.Position, token.Text));
                    break;
                case TokenKind.VariableBegin:
                    _index++;
                    var expression = ParseTuple(withCondition: true, ends: [], explicitParentheses: false);
                    Expect(TokenKind.VariableEnd);
                    body.Add(new OutputStatement(token.Position, expression));
                    break;
                case TokenKind.BlockBegin:
                    var name = Peek();
                    if (name.Kind != TokenKind.Name) throw new JinjaSyntaxException($"Expected a tag name after '{{%', got {Describe(name)}.", name.Position);
                    if (ends.Contains(name.Text))
                    {
                        _index += 2;
                        return (body, name);
                    }
                    _index += 2;
                    // A tag's errors point at its "{%".
                    body.Add(ParseStatement(name with { Position = token.Position }));
                    break;
                default:
                    throw new JinjaSyntaxException($"Unexpected {Describe(token)}.", token.Position);
            }
        }
    }

    private Statement ParseStatement(Token tag)
    {
        if (++_depth > MaxDepth) throw new JinjaSyntaxException("Tags are nested too deeply.", tag.Position);
        try
        {
            return tag.Text switch
            {
                "if" => ParseIf(tag),
                "for" => ParseFor(tag),
                "set" => ParseSet(tag),
                "macro" => ParseMacro(tag),
                "with" => ParseWith(tag),
                "filter" => ParseFilterBlock(tag),
                "break" or "continue" => ParseLoopControl(tag),
                "generation" => ParseBlock(tag, "endgeneration"),
                _ => throw new JinjaSyntaxException(
                    tag.Text is "include" or "extends" or "import" or "from" or "block" or "call" or "do" or "trans"
                        ? $"The tag '{tag.Text}' is not supported in chat templates."
                        : $"Encountered unknown tag '{tag.Text}'.", tag.Position),
            };
        }
        finally
        {
            _depth--;
        }
    }

    private IfStatement ParseIf(Token tag)
    {
        var branches = new List<(Expression, IReadOnlyList<Statement>)>();
        var condition = ParseTuple(withCondition: false, ends: [], explicitParentheses: false);
        Expect(TokenKind.BlockEnd);
        IReadOnlyList<Statement> otherwise = [];
        while (true)
        {
            var (body, end) = Subparse(["elif", "else", "endif"], tag);
            branches.Add((condition, body));
            if (end!.Text == "elif")
            {
                condition = ParseTuple(withCondition: false, ends: [], explicitParentheses: false);
                Expect(TokenKind.BlockEnd);
                continue;
            }
            if (end.Text == "else")
            {
                Expect(TokenKind.BlockEnd);
                (otherwise, _) = Subparse(["endif"], tag);
            }
            Expect(TokenKind.BlockEnd);
            return new IfStatement(tag.Position, branches, otherwise);
        }
    }

    private ForStatement ParseFor(Token tag)
    {
        var target = ParseAssignTarget(["in"], withNamespace: false);
        Expect(TokenKind.Name, "in");
        var items = ParseTuple(withCondition: false, ends: ["recursive"], explicitParentheses: false);
        Expression? condition = null;
        if (SkipName("if")) condition = ParseExpression(withCondition: true);
        if (Current.IsName("recursive")) throw new JinjaSyntaxException("Recursive for loops are not supported in chat templates.", Current.Position);
        Expect(TokenKind.BlockEnd);
        _loops++;
        List<Statement> body;
        Token? end;
        try
        {
            (body, end) = Subparse(["endfor", "else"], tag);
        }
        finally
        {
            _loops--;
        }
        IReadOnlyList<Statement> otherwise = [];
        if (end!.Text == "else")
        {
            Expect(TokenKind.BlockEnd);
            (otherwise, _) = Subparse(["endfor"], tag);
        }
        Expect(TokenKind.BlockEnd);
        return new ForStatement(tag.Position, target, items, condition, body, otherwise);
    }

    private Statement ParseSet(Token tag)
    {
        var target = ParseAssignTarget([], withNamespace: true);
        if (SkipOperator("="))
        {
            var value = ParseTuple(withCondition: true, ends: [], explicitParentheses: false);
            Expect(TokenKind.BlockEnd);
            return new SetStatement(tag.Position, target, value);
        }
        var filters = ParseFilterChain();
        Expect(TokenKind.BlockEnd);
        var (body, _) = Subparse(["endset"], tag);
        Expect(TokenKind.BlockEnd);
        return new SetBlockStatement(tag.Position, target, filters, body);
    }

    private MacroStatement ParseMacro(Token tag)
    {
        var name = Expect(TokenKind.Name).Text;
        var parameters = new List<(string, Expression?)>();
        Expect(TokenKind.Operator, "(");
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            if (Current.IsOperator(")")) break;
            var parameter = Expect(TokenKind.Name);
            Expression? fallback = SkipOperator("=") ? ParseExpression(withCondition: true) : null;
            if (fallback is null && parameters.Any(p => p.Item2 is not null))
                throw new JinjaSyntaxException("A macro parameter without a default follows one with a default.", parameter.Position);
            parameters.Add((parameter.Text, fallback));
        }
        Expect(TokenKind.Operator, ")");
        Expect(TokenKind.BlockEnd);
        var loops = _loops;
        _loops = 0;
        List<Statement> body;
        try
        {
            (body, _) = Subparse(["endmacro"], tag);
        }
        finally
        {
            _loops = loops;
        }
        Expect(TokenKind.BlockEnd);
        return new MacroStatement(tag.Position, name, parameters, body);
    }

    private WithStatement ParseWith(Token tag)
    {
        var assignments = new List<(AssignTarget, Expression)>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0) Expect(TokenKind.Operator, ",");
            var target = ParseAssignTarget(["="], withNamespace: false);
            Expect(TokenKind.Operator, "=");
            assignments.Add((target, ParseExpression(withCondition: true)));
        }
        Expect(TokenKind.BlockEnd);
        var (body, _) = Subparse(["endwith"], tag);
        Expect(TokenKind.BlockEnd);
        return new WithStatement(tag.Position, assignments, body);
    }

    private FilterBlockStatement ParseFilterBlock(Token tag)
    {
        var filters = new List<FilterExpression> { ParseFilter(null) };
        filters.AddRange(ParseFilterChain());
        Expect(TokenKind.BlockEnd);
        var (body, _) = Subparse(["endfilter"], tag);
        Expect(TokenKind.BlockEnd);
        return new FilterBlockStatement(tag.Position, filters, body);
    }

    private LoopControlStatement ParseLoopControl(Token tag)
    {
        if (_loops == 0) throw new JinjaSyntaxException($"'{tag.Text}' outside of a loop.", tag.Position);
        Expect(TokenKind.BlockEnd);
        return new LoopControlStatement(tag.Position, tag.Text == "break" ? Flow.Break : Flow.Continue);
    }

    private BlockStatement ParseBlock(Token tag, string end)
    {
        Expect(TokenKind.BlockEnd);
        var (body, _) = Subparse([end], tag);
        Expect(TokenKind.BlockEnd);
        return new BlockStatement(tag.Position, body);
    }

    /// <summary>Filters after <c>{% set x | f %}</c> or <c>{% filter f | g %}</c>.</summary>
    private List<FilterExpression> ParseFilterChain()
    {
        var filters = new List<FilterExpression>();
        while (SkipOperator("|")) filters.Add(ParseFilterAfterBar(null));
        return filters;
    }

    private AssignTarget ParseAssignTarget(string[] ends, bool withNamespace)
    {
        var start = Current;
        if (withNamespace && start.Kind == TokenKind.Name && Peek().IsOperator("."))
        {
            _index += 2;
            var attribute = Expect(TokenKind.Name);
            return new NamespaceTarget(start.Position, start.Text, attribute.Text);
        }
        var targets = new List<AssignTarget>();
        var tuple = false;
        while (true)
        {
            if (targets.Count > 0) Expect(TokenKind.Operator, ",");
            if (Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd || Current.IsOperator(")")
                || (Current.Kind == TokenKind.Name && ends.Contains(Current.Text)) || (Current.Kind == TokenKind.Operator && ends.Contains(Current.Text)))
                break;
            targets.Add(ParseSingleTarget());
            if (Current.IsOperator(",")) tuple = true;
            else break;
        }
        if (targets.Count == 0) throw new JinjaSyntaxException($"Expected a name to assign to, got {Describe(Current)}.", Current.Position);
        return tuple ? new TupleTarget(start.Position, targets) : targets[0];
    }

    private AssignTarget ParseSingleTarget()
    {
        var token = Current;
        if (token.Kind == TokenKind.Name && token.Text is not ("true" or "false" or "none" or "True" or "False" or "None"))
        {
            _index++;
            return new NameTarget(token.Position, token.Text);
        }
        if (SkipOperator("("))
        {
            var inner = ParseAssignTarget([], withNamespace: false);
            Expect(TokenKind.Operator, ")");
            return inner;
        }
        throw new JinjaSyntaxException($"Cannot assign to {Describe(token)}.", token.Position);
    }

    // ---- expressions ----

    private Expression ParseTuple(bool withCondition, string[] ends, bool explicitParentheses)
    {
        var start = Current;
        var items = new List<Expression>();
        var tuple = false;
        while (true)
        {
            if (items.Count > 0) Expect(TokenKind.Operator, ",");
            if (Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd || Current.IsOperator(")")
                || (Current.Kind == TokenKind.Name && ends.Contains(Current.Text)))
                break;
            items.Add(ParseExpression(withCondition));
            if (Current.IsOperator(",")) tuple = true;
            else break;
        }
        if (!tuple)
        {
            if (items.Count > 0) return items[0];
            if (!explicitParentheses) throw new JinjaSyntaxException($"Expected an expression, got {Describe(Current)}.", Current.Position);
        }
        return new ListExpression(start.Position, items, tuple: true);
    }

    private Expression ParseExpression(bool withCondition)
    {
        if (++_depth > MaxDepth) throw new JinjaSyntaxException("The expression is nested too deeply.", Current.Position);
        try
        {
            return withCondition ? ParseConditional() : ParseOr();
        }
        finally
        {
            _depth--;
        }
    }

    private Expression ParseConditional()
    {
        var expression = ParseOr();
        while (Current.IsName("if"))
        {
            var position = Next().Position;
            var condition = ParseOr();
            var otherwise = SkipName("else") ? ParseConditional() : null;
            expression = new ConditionalExpression(position, condition, expression, otherwise);
        }
        return expression;
    }

    private Expression ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var position = Next().Position;
            left = new LogicalExpression(position, left, ParseAnd(), and: false);
        }
        return left;
    }

    private Expression ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var position = Next().Position;
            left = new LogicalExpression(position, left, ParseNot(), and: true);
        }
        return left;
    }

    private Expression ParseNot()
    {
        if (Current.IsName("not"))
        {
            var position = Next().Position;
            return new NotExpression(position, ParseNot());
        }
        return ParseCompare();
    }

    private static readonly string[] ComparisonOperators = ["==", "!=", "<", "<=", ">", ">="];

    private Expression ParseCompare()
    {
        var start = Current.Position;
        var first = ParseSum();
        var rest = new List<(string, Expression)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && ComparisonOperators.Contains(Current.Text))
            {
                var op = Next().Text;
                rest.Add((op, ParseSum()));
            }
            else if (SkipName("in"))
            {
                rest.Add(("in", ParseSum()));
            }
            else if (Current.IsName("not") && Peek().IsName("in"))
            {
                _index += 2;
                rest.Add(("notin", ParseSum()));
            }
            else
            {
                break;
            }
        }
        return rest.Count == 0 ? first : new CompareExpression(start, first, rest);
    }

    private Expression ParseSum()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new ArithmeticExpression(op.Position, op.Text, left, ParseConcat());
        }
        return left;
    }

    private Expression ParseConcat()
    {
        var start = Current.Position;
        var operands = new List<Expression> { ParseProduct() };
        while (SkipOperator("~")) operands.Add(ParseProduct());
        return operands.Count == 1 ? operands[0] : new ConcatExpression(start, operands);
    }

    private Expression ParseProduct()
    {
        var left = ParsePower();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new ArithmeticExpression(op.Position, op.Text, left, ParsePower());
        }
        return left;
    }

    private Expression ParsePower()
    {
        var left = ParseUnary(withFilter: true);
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new ArithmeticExpression(op.Position, op.Text, left, ParseUnary(withFilter: true));
        }
        return left;
    }

    private Expression ParseUnary(bool withFilter)
    {
        if (++_depth > MaxDepth) throw new JinjaSyntaxException("The expression is nested too deeply.", Current.Position);
        try
        {
            Expression node;
            if (Current.IsOperator("-") || Current.IsOperator("+"))
            {
                var op = Next();
                node = new NegateExpression(op.Position, ParseUnary(withFilter: false), negative: op.Text == "-");
            }
            else
            {
                node = ParsePrimary();
            }
            node = ParsePostfix(node);
            return withFilter ? ParseFilterExpression(node) : node;
        }
        finally
        {
            _depth--;
        }
    }

    private Expression ParsePrimary()
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                _index++;
                return token.Text switch
                {
                    "true" or "True" => new Literal(token.Position, true),
                    "false" or "False" => new Literal(token.Position, false),
                    "none" or "None" => new Literal(token.Position, null),
                    _ => new NameExpression(token.Position, token.Text),
                };
            case TokenKind.String:
                _index++;
                var text = (string)token.Value!;
                while (Current.Kind == TokenKind.String) text += (string)Next().Value!;
                return new Literal(token.Position, text);
            case TokenKind.Integer or TokenKind.Float:
                _index++;
                return new Literal(token.Position, token.Value);
            case TokenKind.Operator when token.Text == "(":
                _index++;
                var inner = ParseTuple(withCondition: true, ends: [], explicitParentheses: true);
                Expect(TokenKind.Operator, ")");
                return inner;
            case TokenKind.Operator when token.Text == "[":
                _index++;
                var items = new List<Expression>();
                while (!Current.IsOperator("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Current.IsOperator("]")) break;
                    items.Add(ParseExpression(withCondition: true));
                }
                Expect(TokenKind.Operator, "]");
                return new ListExpression(token.Position, items, tuple: false);
            case TokenKind.Operator when token.Text == "{":
                _index++;
                var pairs = new List<(Expression, Expression)>();
                while (!Current.IsOperator("}"))
                {
                    if (pairs.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Current.IsOperator("}")) break;
                    var key = ParseExpression(withCondition: true);
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression(withCondition: true)));
                }
                Expect(TokenKind.Operator, "}");
                return new DictExpression(token.Position, pairs);
            default:
                throw new JinjaSyntaxException($"Expected an expression, got {Describe(token)}.", token.Position);
        }
    }

    private Expression ParsePostfix(Expression node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("."))
            {
                _index++;
                var name = Current;
                if (name.Kind == TokenKind.Name) node = new AttributeExpression(token.Position, node, name.Text);
                else if (name.Kind == TokenKind.Integer) node = new ItemExpression(token.Position, node, new Literal(name.Position, name.Value));
                else throw new JinjaSyntaxException($"Expected an attribute name after '.', got {Describe(name)}.", name.Position);
                _index++;
            }
            else if (token.IsOperator("["))
            {
                _index++;
                var subscripts = new List<(Expression Value, bool IsSlice)>();
                while (!Current.IsOperator("]"))
                {
                    if (subscripts.Count > 0) Expect(TokenKind.Operator, ",");
                    subscripts.Add(ParseSubscript(node, token.Position));
                }
                Expect(TokenKind.Operator, "]");
                if (subscripts.Count == 0) throw new JinjaSyntaxException("Expected a subscript inside '[]'.", token.Position);
                if (subscripts.Count == 1)
                {
                    node = subscripts[0].IsSlice ? subscripts[0].Value : new ItemExpression(token.Position, node, subscripts[0].Value);
                }
                else
                {
                    if (subscripts.Any(s => s.IsSlice)) throw new JinjaSyntaxException("Multi-dimensional slices are not supported.", token.Position);
                    node = new ItemExpression(token.Position, node, new ListExpression(token.Position, [.. subscripts.Select(s => s.Value)], tuple: true));
                }
            }
            else if (token.IsOperator("("))
            {
                node = new CallExpression(node.Position, node, ParseCallArguments());
            }
            else
            {
                return node;
            }
        }
    }

    /// <summary>One subscript: an expression, or a slice <c>a:b:c</c> (any part may be missing), returned as a slice of <paramref name="owner"/>.</summary>
    private (Expression Value, bool IsSlice) ParseSubscript(Expression owner, int position)
    {
        Expression? start = null;
        if (!Current.IsOperator(":"))
        {
            var expression = ParseExpression(withCondition: true);
            if (!Current.IsOperator(":")) return (expression, false);
            start = expression;
        }
        _index++;
        Expression? stop = null, step = null;
        if (!Current.IsOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(",")) stop = ParseExpression(withCondition: true);
        if (SkipOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(",")) step = ParseExpression(withCondition: true);
        return (new SliceExpression(position, owner, start, stop, step), true);
    }

    private ArgumentList ParseCallArguments()
    {
        Expect(TokenKind.Operator, "(");
        var positional = new List<Expression>();
        var keywords = new List<(string, Expression)>();
        var first = true;
        while (!Current.IsOperator(")"))
        {
            if (!first) Expect(TokenKind.Operator, ",");
            first = false;
            if (Current.IsOperator(")")) break;
            if (Current.IsOperator("*") || Current.IsOperator("**"))
                throw new JinjaSyntaxException("*args and **kwargs in calls are not supported in chat templates.", Current.Position);
            if (Current.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                var name = Next().Text;
                _index++;
                keywords.Add((name, ParseExpression(withCondition: true)));
                continue;
            }
            if (keywords.Count > 0) throw new JinjaSyntaxException("A positional argument follows a keyword argument.", Current.Position);
            positional.Add(ParseExpression(withCondition: true));
        }
        Expect(TokenKind.Operator, ")");
        return new ArgumentList(positional, keywords);
    }

    private Expression ParseFilterExpression(Expression node)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                node = ParseFilter(node);
            }
            else if (Current.IsName("is"))
            {
                node = ParseTest(node);
            }
            else if (Current.IsOperator("("))
            {
                node = new CallExpression(Current.Position, node, ParseCallArguments());
            }
            else
            {
                return node;
            }
        }
    }

    /// <summary>A filter after <c>|</c> (or the first one of a filter block, where <paramref name="value"/> is null).</summary>
    private FilterExpression ParseFilter(Expression? value)
    {
        SkipOperator("|");
        return ParseFilterAfterBar(value);
    }

    private FilterExpression ParseFilterAfterBar(Expression? value)
    {
        var token = Expect(TokenKind.Name);
        var name = token.Text;
        while (SkipOperator(".")) name += "." + Expect(TokenKind.Name).Text;
        if (!JinjaFilters.All.TryGetValue(name, out var filter))
            throw new JinjaSyntaxException($"No filter named '{name}' (it is not among the filters chat templates are given).", token.Position);
        var arguments = Current.IsOperator("(") ? ParseCallArguments() : ArgumentList.Empty;
        return new FilterExpression(token.Position, value, name, filter, arguments);
    }

    private TestExpression ParseTest(Expression value)
    {
        var position = Next().Position;
        var negated = SkipName("not");
        var token = Expect(TokenKind.Name);
        var name = token.Text;
        while (SkipOperator(".")) name += "." + Expect(TokenKind.Name).Text;
        if (!JinjaTests.All.TryGetValue(name, out var test))
            throw new JinjaSyntaxException($"No test named '{name}'.", token.Position);
        ArgumentList arguments;
        if (Current.IsOperator("("))
        {
            arguments = ParseCallArguments();
        }
        else if ((Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || Current.IsOperator("[") || Current.IsOperator("{"))
            && !(Current.IsName("else") || Current.IsName("or") || Current.IsName("and")))
        {
            if (Current.IsName("is")) throw new JinjaSyntaxException("You cannot chain multiple tests with is.", Current.Position);
            arguments = new ArgumentList([ParsePostfix(ParsePrimary())], []);
        }
        else
        {
            arguments = ArgumentList.Empty;
        }
        return new TestExpression(position, value, test, arguments, negated);
    }
}
