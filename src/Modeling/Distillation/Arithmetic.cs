using System.Globalization;

namespace Babel.Modeling.Distillation;

/// <summary>Evaluates SVAMP-style gold equations such as <c>( ( 8.0 - 5.0 ) * 2.0 )</c>: numbers, + - * /, parentheses, unary minus.</summary>
public static class Arithmetic
{
    public static bool TryEvaluate(string expression, out decimal value)
    {
        var parser = new Parser(expression);
        try
        {
            value = parser.Sum();
            parser.SkipSpaces();
            return parser.AtEnd;
        }
        catch (Exception e) when (e is FormatException or DivideByZeroException or OverflowException)
        {
            value = 0;
            return false;
        }
    }

    private sealed class Parser(string text)
    {
        private int _position;

        public bool AtEnd => _position == text.Length;

        public void SkipSpaces()
        {
            while (_position < text.Length && char.IsWhiteSpace(text[_position])) _position++;
        }

        private bool Take(char c)
        {
            SkipSpaces();
            if (_position < text.Length && text[_position] == c)
            {
                _position++;
                return true;
            }
            return false;
        }

        public decimal Sum()
        {
            var value = Product();
            while (true)
            {
                if (Take('+')) value += Product();
                else if (Take('-')) value -= Product();
                else return value;
            }
        }

        private decimal Product()
        {
            var value = Unary();
            while (true)
            {
                if (Take('*')) value *= Unary();
                else if (Take('/')) value /= Unary();
                else return value;
            }
        }

        private decimal Unary()
        {
            if (Take('-')) return -Unary();
            if (Take('('))
            {
                var inner = Sum();
                if (!Take(')')) throw new FormatException("missing )");
                return inner;
            }
            SkipSpaces();
            var start = _position;
            while (_position < text.Length && (char.IsAsciiDigit(text[_position]) || text[_position] == '.')) _position++;
            if (start == _position) throw new FormatException("number expected");
            return decimal.Parse(text.AsSpan(start, _position - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        }
    }
}
