using System.Globalization;
using System.Text;

namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// A parsed Jinja2 template, rendered as Hugging Face transformers renders chat templates: Jinja2's
/// <c>ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)</c> with the loop-controls extension, the globals
/// <c>raise_exception</c> and <c>strftime_now</c>, and <c>tojson</c> as <c>json.dumps</c>.
/// </summary>
internal sealed class JinjaTemplate
{
    /// <summary>Jinja2's sandbox refuses ranges longer than this.</summary>
    private const int MaxRange = 100_000;
    private const int MaxOutputChars = 64 << 20;

    private readonly List<Statement> _body;

    private JinjaTemplate(string normalized, List<Statement> body)
    {
        Source = normalized;
        _body = body;
    }

    /// <summary>The template text with its line breaks normalized (the text positions in errors refer to).</summary>
    public string Source { get; }

    /// <exception cref="JinjaSyntaxException">The template is malformed, or uses a filter, test or tag that is not supported.</exception>
    public static JinjaTemplate Parse(string text)
    {
        var normalized = JinjaLexer.Normalize(text);
        return new JinjaTemplate(normalized, JinjaParser.Parse(JinjaLexer.Tokenize(normalized)));
    }

    /// <summary>Renders with <paramref name="variables"/>, given as Python values (see JinjaValues.cs).</summary>
    /// <exception cref="JinjaException">The template failed or called <c>raise_exception</c> (<see cref="JinjaRaisedException"/>).</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, TimeProvider clock)
    {
        var globals = new Scope(null, Globals(clock));
        var scope = new Scope(globals);
        foreach (var (name, value) in variables) scope.Set(name, value);
        var context = new RenderContext(scope, clock, MaxOutputChars);
        var output = new StringBuilder();
        Statement.RenderAll(_body, context, output);
        return output.ToString();
    }

    /// <summary>The 1-based line and column of <paramref name="position"/> in <see cref="Source"/>.</summary>
    public (int Line, int Column) LineColumn(int position) => LineColumn(Source, position);

    /// <summary>The 1-based line and column of <paramref name="position"/> in <paramref name="normalized"/> text.</summary>
    public static (int Line, int Column) LineColumn(string normalized, int position)
    {
        position = Math.Clamp(position, 0, normalized.Length);
        var line = 1;
        var lineStart = 0;
        for (var i = 0; i < position; i++)
        {
            if (normalized[i] != '\n') continue;
            line++;
            lineStart = i + 1;
        }
        return (line, position - lineStart + 1);
    }

    private static Dictionary<string, object?> Globals(TimeProvider clock) => new(StringComparer.Ordinal)
    {
        ["range"] = new JinjaCallable("range", Range),
        ["dict"] = new JinjaCallable("dict", arguments =>
        {
            if (arguments.Positional.Count > 0) throw new JinjaException("dict() takes keyword arguments only here.");
            var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (name, value) in arguments.Keywords) dict[name] = value;
            return dict;
        }),
        ["namespace"] = new JinjaCallable("namespace", arguments =>
        {
            var ns = new JinjaNamespace();
            foreach (var positional in arguments.Positional)
            {
                if (positional is not OrderedDictionary<string, object?> initial) throw new JinjaException("namespace() takes a mapping or keyword arguments.");
                foreach (var (name, value) in initial) ns.Attributes[name] = value;
            }
            foreach (var (name, value) in arguments.Keywords) ns.Attributes[name] = value;
            return ns;
        }),
        ["raise_exception"] = new JinjaCallable("raise_exception", arguments =>
            throw new JinjaRaisedException(PythonText.Str(arguments.Get(0, "message", "")))),
        ["strftime_now"] = new JinjaCallable("strftime_now", arguments =>
            arguments.Get(0, "format") is string format
                ? Strftime(clock.GetLocalNow().DateTime, format)
                : throw new JinjaException("strftime_now() needs a format string.")),
    };

    private static object? Range(CallArguments arguments)
    {
        var bounds = arguments.Positional.Select(p => JinjaMethods.Integer(p, "range argument")).ToArray();
        if (arguments.Keywords.Count > 0) throw new JinjaException("range() takes no keyword arguments.");
        var (start, stop, step) = bounds.Length switch
        {
            1 => (0L, bounds[0], 1L),
            2 => (bounds[0], bounds[1], 1L),
            3 => (bounds[0], bounds[1], bounds[2]),
            _ => throw new JinjaException($"range expected 1 to 3 arguments, got {bounds.Length}."),
        };
        if (step == 0) throw new JinjaException("range() arg 3 must not be zero.");
        var count = step > 0 ? (stop - start + step - 1) / step : (start - stop - step - 1) / -step;
        if (count > MaxRange) throw new JinjaException($"A range may hold at most {MaxRange} items.");
        var items = new List<object?>((int)Math.Max(count, 0));
        for (var i = 0L; i < count; i++) items.Add(start + i * step);
        return items;
    }

    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /// <summary>
    /// C's <c>strftime</c> in the C locale, as Python's <c>datetime.strftime</c> calls it on Linux, including glibc's
    /// <c>%-d</c> (no padding); an unknown directive is written as it stands.
    /// </summary>
    public static string Strftime(DateTime time, string format)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                builder.Append(format[i]);
                continue;
            }
            var unpadded = format[i + 1] == '-' && i + 2 < format.Length;
            var directive = format[unpadded ? i + 2 : i + 1];
            string Number(int value, int width) => unpadded ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(new string('0', width), CultureInfo.InvariantCulture);
            string? text = directive switch
            {
                'a' => Days[(int)time.DayOfWeek][..3],
                'A' => Days[(int)time.DayOfWeek],
                'b' or 'h' => CultureInfo.InvariantCulture.DateTimeFormat.AbbreviatedMonthNames[time.Month - 1],
                'B' => CultureInfo.InvariantCulture.DateTimeFormat.MonthNames[time.Month - 1],
                'd' => Number(time.Day, 2),
                'e' => unpadded ? Number(time.Day, 1) : time.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Number(time.Month, 2),
                'y' => Number(time.Year % 100, 2),
                'Y' => time.Year.ToString(CultureInfo.InvariantCulture),
                'H' => Number(time.Hour, 2),
                'I' => Number(time.Hour % 12 == 0 ? 12 : time.Hour % 12, 2),
                'M' => Number(time.Minute, 2),
                'S' => Number(time.Second, 2),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => Number(time.DayOfYear, 3),
                'u' => ((int)time.DayOfWeek == 0 ? 7 : (int)time.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'w' => ((int)time.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'F' => time.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                'D' => time.ToString("MM/dd/yy", CultureInfo.InvariantCulture),
                'T' => time.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                'R' => time.ToString("HH:mm", CultureInfo.InvariantCulture),
                'z' or 'Z' => "",
                '%' => "%",
                _ => null,
            };
            if (text is null)
            {
                builder.Append('%');
                continue;
            }
            builder.Append(text);
            i += unpadded ? 2 : 1;
        }
        return builder.ToString();
    }
}
