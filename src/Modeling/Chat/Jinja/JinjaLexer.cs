using System.Globalization;
using System.Text;

namespace Babel.Modeling.Chat.Jinja;

internal enum TokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

/// <summary>One token; <see cref="Position"/> is its offset in the normalized template text.</summary>
internal sealed record Token(TokenKind Kind, string Text, int Position, object? Value = null)
{
    public bool Is(TokenKind kind, string text) => Kind == kind && Text == text;

    public bool IsName(string name) => Is(TokenKind.Name, name);

    public bool IsOperator(string op) => Is(TokenKind.Operator, op);
}

/// <summary>
/// Splits a template into tokens as Jinja2's lexer does with <c>trim_blocks=True, lstrip_blocks=True</c> (Hugging Face's
/// chat template settings): a block or comment tag eats the one newline after it; the spaces and tabs before a block or
/// comment tag that starts its line are dropped; <c>{%-</c>, <c>{{-</c>, <c>{#-</c> strip all whitespace before the tag,
/// <c>-%}</c>, <c>-}}</c>, <c>-#}</c> all whitespace after it, and <c>{%+</c> / <c>+%}</c> keep it. Line breaks are
/// normalized to <c>\n</c> and one trailing newline is dropped, as Jinja2 does by default. Comments produce no tokens;
/// <c>{% raw %}</c> blocks become data.
/// </summary>
internal sealed class JinjaLexer
{
    private const int MaxNesting = 256;

    private readonly string _source;
    private readonly List<Token> _tokens = [];
    private int _position;
    // Whether the text after the previous tag starts a line (the tag, with what trimming ate, ended in a newline).
    private bool _lineStarting = true;

    private JinjaLexer(string source) => _source = source;

    /// <summary>The template text with its line breaks normalized, the text every token position refers to.</summary>
    public static string Normalize(string template)
    {
        var text = template.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    /// <summary>The tokens of <paramref name="normalized"/> (the output of <see cref="Normalize"/>), ending with <see cref="TokenKind.End"/>.</summary>
    public static List<Token> Tokenize(string normalized)
    {
        var lexer = new JinjaLexer(normalized);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        while (_position < _source.Length)
        {
            var tag = NextTagStart(_position);
            if (tag < 0)
            {
                _tokens.Add(new Token(TokenKind.Data, _source[_position..], _position));
                _position = _source.Length;
                break;
            }
            var kind = _source[tag + 1];
            var raw = kind == '%' ? RawBlockEnd(tag) : -1;
            var sign = tag + 2 < _source.Length && _source[tag + 2] is '-' or '+' ? _source[tag + 2] : '\0';
            var text = _source[_position..tag];
            if (sign == '-')
            {
                text = PythonText.Strip(text, null, left: false);
            }
            else if (sign != '+' && kind != '{')
            {
                // lstrip_blocks: drop the spaces and tabs between the start of the line and the tag.
                var lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || _lineStarting) && lineStart < text.Length && AllSpace(text, lineStart))
                {
                    text = text[..lineStart];
                }
            }
            if (text.Length > 0) _tokens.Add(new Token(TokenKind.Data, text, _position));
            _lineStarting = false;
            var afterOpen = tag + 2 + (sign == '\0' ? 0 : 1);
            if (raw >= 0)
            {
                Raw(tag, raw);
                continue;
            }
            switch (kind)
            {
                case '#':
                    Comment(tag, afterOpen);
                    break;
                case '%':
                    _tokens.Add(new Token(TokenKind.BlockBegin, "{%", tag));
                    _position = afterOpen;
                    Tag(block: true);
                    break;
                default:
                    _tokens.Add(new Token(TokenKind.VariableBegin, "{{", tag));
                    _position = afterOpen;
                    Tag(block: false);
                    break;
            }
        }
        _tokens.Add(new Token(TokenKind.End, "", _source.Length));
    }

    private static bool AllSpace(string text, int from)
    {
        for (var i = from; i < text.Length; i++) if (!PythonText.IsSpace(text[i])) return false;
        return true;
    }

    private int NextTagStart(int from)
    {
        for (var i = _source.IndexOf('{', from); i >= 0 && i + 1 < _source.Length; i = _source.IndexOf('{', i + 1))
        {
            if (_source[i + 1] is '{' or '%' or '#') return i;
        }
        return -1;
    }

    private void Comment(int tag, int from)
    {
        for (var i = from; i < _source.Length; i++)
        {
            if (At(i, "+#}"))
            {
                Finish(i + 3);
                return;
            }
            if (At(i, "-#}"))
            {
                Finish(SkipSpace(i + 3));
                return;
            }
            if (At(i, "#}"))
            {
                Finish(i + 2 < _source.Length && _source[i + 2] == '\n' ? i + 3 : i + 2);
                return;
            }
        }
        throw new JinjaSyntaxException("Missing end of comment tag.", tag);
    }

    /// <summary>If the block tag at <paramref name="tag"/> is <c>{% raw %}</c>, the offset just after it; else -1.</summary>
    private int RawBlockEnd(int tag)
    {
        var i = tag + 2;
        if (i < _source.Length && _source[i] is '-' or '+') i++;
        i = SkipSpace(i);
        if (!At(i, "raw")) return -1;
        i = SkipSpace(i + 3);
        if (At(i, "-%}")) return SkipSpace(i + 3);
        return At(i, "%}") ? i + 2 : -1;
    }

    private void Raw(int tag, int contentStart)
    {
        for (var i = contentStart; i < _source.Length; i++)
        {
            if (!At(i, "{%")) continue;
            var j = i + 2;
            var sign = j < _source.Length && _source[j] is '-' or '+' ? _source[j] : '\0';
            if (sign != '\0') j++;
            j = SkipSpace(j);
            if (!At(j, "endraw")) continue;
            j = SkipSpace(j + 6);
            int end;
            if (At(j, "+%}")) end = j + 3;
            else if (At(j, "-%}")) end = SkipSpace(j + 3);
            else if (At(j, "%}")) end = j + 2 < _source.Length && _source[j + 2] == '\n' ? j + 3 : j + 2;
            else continue;
            var text = _source[contentStart..i];
            if (sign == '-') text = PythonText.Strip(text, null, left: false);
            else if (sign != '+')
            {
                var lineStart = text.LastIndexOf('\n') + 1;
                var rawLineStarting = contentStart > 0 && _source[contentStart - 1] == '\n';
                if ((lineStart > 0 || rawLineStarting) && lineStart < text.Length && AllSpace(text, lineStart)) text = text[..lineStart];
            }
            if (text.Length > 0) _tokens.Add(new Token(TokenKind.Data, text, contentStart));
            Finish(end);
            return;
        }
        throw new JinjaSyntaxException("Missing end of raw directive.", tag);
    }

    private void Finish(int end)
    {
        _lineStarting = end > 0 && _source[end - 1] == '\n';
        _position = end;
    }

    private void Tag(bool block)
    {
        var open = _tokens[^1].Position;
        var brackets = new Stack<char>();
        while (true)
        {
            if (_position >= _source.Length)
                throw new JinjaSyntaxException($"Unexpected end of template: the {(block ? "'{%'" : "'{{'")} tag is never closed.", open);
            if (brackets.Count == 0 && TagEnd(block)) return;
            var c = _source[_position];
            if (PythonText.IsSpace(c))
            {
                _position++;
                continue;
            }
            var start = _position;
            if (char.IsAsciiDigit(c))
            {
                Number();
                continue;
            }
            if (char.IsLetter(c) || c == '_')
            {
                while (_position < _source.Length && (char.IsLetterOrDigit(_source[_position]) || _source[_position] == '_')) _position++;
                _tokens.Add(new Token(TokenKind.Name, _source[start.._position], start));
                continue;
            }
            if (c is '\'' or '"')
            {
                StringLiteral(c);
                continue;
            }
            var op = Operator();
            if (op is null) throw new JinjaSyntaxException($"Unexpected character {PythonText.Repr(c.ToString())}.", start);
            switch (op)
            {
                case "(" or "[" or "{":
                    if (brackets.Count >= MaxNesting) throw new JinjaSyntaxException("Brackets are nested too deeply.", start);
                    brackets.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
                    break;
                case ")" or "]" or "}":
                    if (brackets.Count == 0) throw new JinjaSyntaxException($"Unexpected '{op}'.", start);
                    var expected = brackets.Pop();
                    if (expected != op[0]) throw new JinjaSyntaxException($"Unexpected '{op}', expected '{expected}'.", start);
                    break;
            }
            _tokens.Add(new Token(TokenKind.Operator, op, start));
        }
    }

    private bool TagEnd(bool block)
    {
        var start = _position;
        if (block)
        {
            if (At(_position, "+%}")) Finish(_position + 3);
            else if (At(_position, "-%}")) Finish(SkipSpace(_position + 3));
            else if (At(_position, "%}")) Finish(_position + 2 < _source.Length && _source[_position + 2] == '\n' ? _position + 3 : _position + 2);
            else return false;
            _tokens.Add(new Token(TokenKind.BlockEnd, "%}", start));
            return true;
        }
        if (At(_position, "-}}")) Finish(SkipSpace(_position + 3));
        else if (At(_position, "}}")) Finish(_position + 2);
        else return false;
        // trim_blocks does not apply to variable tags: what follows "}}" never starts a line for lstrip_blocks.
        _lineStarting = false;
        _tokens.Add(new Token(TokenKind.VariableEnd, "}}", start));
        return true;
    }

    private static readonly string[] TwoCharacterOperators = ["//", "**", "==", "!=", ">=", "<="];
    private const string OneCharacterOperators = "+-/*%~[](){}><=.:|,;";

    private string? Operator()
    {
        foreach (var op in TwoCharacterOperators)
        {
            if (At(_position, op))
            {
                _position += 2;
                return op;
            }
        }
        var c = _source[_position];
        if (!OneCharacterOperators.Contains(c, StringComparison.Ordinal)) return null;
        _position++;
        return c.ToString();
    }

    private void Number()
    {
        var start = _position;
        var afterDot = start > 0 && _source[start - 1] == '.';
        if (_source[start] == '0' && start + 1 < _source.Length && char.ToLowerInvariant(_source[start + 1]) is 'x' or 'o' or 'b')
        {
            var radix = char.ToLowerInvariant(_source[start + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            _position += 2;
            var digitsStart = _position;
            while (_position < _source.Length && (Uri.IsHexDigit(_source[_position]) || _source[_position] == '_')) _position++;
            var digits = _source[digitsStart.._position].Replace("_", "", StringComparison.Ordinal);
            try
            {
                _tokens.Add(new Token(TokenKind.Integer, _source[start.._position], start, Convert.ToInt64(digits, radix)));
            }
            catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
            {
                throw new JinjaSyntaxException($"Invalid number literal '{_source[start.._position]}'.", start);
            }
            return;
        }
        Digits();
        var isFloat = false;
        if (!afterDot && _position + 1 < _source.Length && _source[_position] == '.' && char.IsAsciiDigit(_source[_position + 1]))
        {
            _position++;
            Digits();
            isFloat = true;
        }
        if (!afterDot && _position < _source.Length && char.ToLowerInvariant(_source[_position]) == 'e')
        {
            var e = _position + 1;
            if (e < _source.Length && _source[e] is '+' or '-') e++;
            if (e < _source.Length && char.IsAsciiDigit(_source[e]))
            {
                _position = e;
                Digits();
                isFloat = true;
            }
        }
        var text = _source[start.._position];
        var plain = text.Replace("_", "", StringComparison.Ordinal);
        if (isFloat)
        {
            _tokens.Add(new Token(TokenKind.Float, text, start, double.Parse(plain, NumberStyles.Float, CultureInfo.InvariantCulture)));
        }
        else if (plain.Length > 1 && plain[0] == '0' && plain.Any(ch => ch != '0'))
        {
            throw new JinjaSyntaxException($"Invalid number literal '{text}' (leading zeros).", start);
        }
        else if (long.TryParse(plain, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            _tokens.Add(new Token(TokenKind.Integer, text, start, value));
        }
        else
        {
            throw new JinjaSyntaxException($"The number '{text}' is too large.", start);
        }
    }

    private void Digits()
    {
        while (_position < _source.Length && (char.IsAsciiDigit(_source[_position])
            || (_source[_position] == '_' && _position + 1 < _source.Length && char.IsAsciiDigit(_source[_position + 1])))) _position++;
    }

    private void StringLiteral(char quote)
    {
        var start = _position;
        var i = start + 1;
        while (i < _source.Length && _source[i] != quote)
        {
            i += _source[i] == '\\' ? 2 : 1;
        }
        if (i >= _source.Length) throw new JinjaSyntaxException("Unterminated string literal.", start);
        _position = i + 1;
        _tokens.Add(new Token(TokenKind.String, _source[start.._position], start, Unescape(_source[(start + 1)..i], start)));
    }

    /// <summary>Python's <c>unicode-escape</c> decoding, which Jinja2 applies to string literals.</summary>
    private static string Unescape(string body, int position)
    {
        if (!body.Contains('\\', StringComparison.Ordinal)) return body;
        var builder = new StringBuilder(body.Length);
        for (var i = 0; i < body.Length; i++)
        {
            var c = body[i];
            if (c != '\\' || i + 1 >= body.Length)
            {
                builder.Append(c);
                continue;
            }
            var next = body[++i];
            switch (next)
            {
                case '\n': break;
                case '\\': builder.Append('\\'); break;
                case '\'': builder.Append('\''); break;
                case '"': builder.Append('"'); break;
                case 'a': builder.Append('\a'); break;
                case 'b': builder.Append('\b'); break;
                case 'f': builder.Append('\f'); break;
                case 'n': builder.Append('\n'); break;
                case 'r': builder.Append('\r'); break;
                case 't': builder.Append('\t'); break;
                case 'v': builder.Append('\v'); break;
                case 'x' or 'u' or 'U':
                    var width = next switch { 'x' => 2, 'u' => 4, _ => 8 };
                    if (!IsHex(body, i + 1, width))
                        throw new JinjaSyntaxException($"Truncated \\{next} escape in a string literal.", position);
                    var code = int.Parse(body.AsSpan(i + 1, width), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (code > 0x10ffff) throw new JinjaSyntaxException("A \\U escape in a string literal is beyond U+10FFFF.", position);
                    builder.Append(code <= 0xffff ? ((char)code).ToString() : char.ConvertFromUtf32(code));
                    i += width;
                    break;
                case >= '0' and <= '7':
                    var octal = next - '0';
                    for (var k = 0; k < 2 && i + 1 < body.Length && body[i + 1] is >= '0' and <= '7'; k++) octal = octal * 8 + (body[++i] - '0');
                    builder.Append((char)octal);
                    break;
                default:
                    builder.Append('\\').Append(next);
                    break;
            }
        }
        return builder.ToString();
    }

    private static bool IsHex(string s, int from, int count)
    {
        if (from + count > s.Length) return false;
        for (var i = from; i < from + count; i++) if (!Uri.IsHexDigit(s[i])) return false;
        return true;
    }

    private bool At(int index, string text) => index + text.Length <= _source.Length && string.CompareOrdinal(_source, index, text, 0, text.Length) == 0;

    private int SkipSpace(int index)
    {
        while (index < _source.Length && PythonText.IsSpace(_source[index])) index++;
        return index;
    }
}
