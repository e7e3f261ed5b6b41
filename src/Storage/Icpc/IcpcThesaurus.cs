using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Babel.Storage.Icpc;

/// <summary>One ICPC-2 rubric from <c>v15-ref-icpc2-data.sql</c>: code (<c>A01</c>), ICPC component (1–7) and English title.</summary>
public sealed record IcpcCode(string Code, int? Component, string Title);

/// <summary>One German thesaurus term and the ICPC-2 code it is labelled with.</summary>
public sealed record IcpcTerm(string Text, string Code);

/// <summary>
/// Parses GNUmed's ICPC-2 SQL scripts (PostgreSQL <c>INSERT</c> statements with standard-conforming string
/// literals: <c>''</c> is a quote, a backslash is literal) into terms and codes.
/// </summary>
public static partial class IcpcThesaurus
{
    private const string ThesaurusInsert = "INSERT INTO ref.icpc_thesaurus (synonym, fk_code) VALUES (";
    private const string CodeInsert = "INSERT INTO staging.icpc (";
    private const string CodeMarker = "code = '";

    /// <summary>The terms of <c>v15-ref-icpc2_de-thesaurus.sql</c>, in file order.</summary>
    public static IReadOnlyList<IcpcTerm> ParseTerms(string sql)
    {
        var terms = new List<IcpcTerm>();
        var at = 0;
        while ((at = sql.IndexOf(ThesaurusInsert, at, StringComparison.Ordinal)) >= 0)
        {
            var position = at + ThesaurusInsert.Length;
            var text = ReadValue(sql, ref position) ?? throw Malformed("a thesaurus synonym is NULL", sql, at);
            var marker = sql.IndexOf(CodeMarker, position, StringComparison.Ordinal);
            if (marker < 0) throw Malformed("a thesaurus entry has no code", sql, at);
            var codeStart = marker + CodeMarker.Length;
            var codeEnd = sql.IndexOf('\'', codeStart);
            terms.Add(new IcpcTerm(text.Trim(), sql[codeStart..codeEnd]));
            at = codeEnd;
        }
        return terms;
    }

    /// <summary>The three-character rubrics of <c>v15-ref-icpc2-data.sql</c> (chapters excluded), in file order.</summary>
    public static IReadOnlyList<IcpcCode> ParseCodes(string sql) =>
        [.. ParseRows(sql).Where(r => IcpcCodePattern().IsMatch(r.Code))];

    /// <summary>The chapter rows (one letter) of <c>v15-ref-icpc2-data.sql</c> with their titles.</summary>
    public static IReadOnlyList<IcpcCode> ParseChapters(string sql) =>
        [.. ParseRows(sql).Where(r => r.Code.Length == 1 && char.IsAsciiLetterUpper(r.Code[0]))];

    /// <summary>Component (1–7) of an ICPC-2 code by its number: 01–29, 30–49, 50–59, 60–61, 62, 63–69, 70–99.</summary>
    public static int Component(string code)
    {
        if (!IcpcCodePattern().IsMatch(code))
        {
            throw new UserInputException($"'{code}' is not an ICPC-2 code (a chapter letter and two digits, e.g. A01).");
        }
        var number = int.Parse(code.AsSpan(1), CultureInfo.InvariantCulture);
        return number switch
        {
            <= 29 => 1,
            <= 49 => 2,
            <= 59 => 3,
            <= 61 => 4,
            62 => 5,
            <= 69 => 6,
            _ => 7,
        };
    }

    /// <summary>English names of the seven ICPC-2 components.</summary>
    public static IReadOnlyList<string> ComponentNames { get; } =
    [
        "Symptoms and complaints",
        "Diagnostic, screening and preventive procedures",
        "Medication, treatment and therapeutic procedures",
        "Test results",
        "Administrative",
        "Referrals and other reasons for encounter",
        "Diseases and diagnoses",
    ];

    [GeneratedRegex("^[A-Z][0-9]{2}$")]
    internal static partial Regex IcpcCodePattern();

    private static IEnumerable<IcpcCode> ParseRows(string sql)
    {
        var at = 0;
        while ((at = sql.IndexOf(CodeInsert, at, StringComparison.Ordinal)) >= 0)
        {
            var values = sql.IndexOf("VALUES (", at, StringComparison.Ordinal);
            if (values < 0) throw Malformed("an INSERT has no VALUES", sql, at);
            var position = values + "VALUES (".Length;
            var row = new List<string?>();
            while (true)
            {
                row.Add(ReadValue(sql, ref position));
                SkipSpace(sql, ref position);
                if (sql[position] == ',') { position++; continue; }
                if (sql[position] == ')') break;
                throw Malformed("a row of values is not closed", sql, at);
            }
            // Columns: COMPONENT, DESCRIPTION, SHORT, ICD_10, CRIT, INCL, EXCL, CONS, NOTE, icpc, CODE.
            if (row.Count != 11) throw Malformed($"a code row has {row.Count} values instead of 11", sql, at);
            var component = row[0] is { } c ? int.Parse(c, CultureInfo.InvariantCulture) : (int?)null;
            yield return new IcpcCode(row[10] ?? "", component, (row[1] ?? "").Trim());
            at = position;
        }
    }

    /// <summary>Reads NULL, a number or a quoted literal at <paramref name="position"/> and moves past it.</summary>
    private static string? ReadValue(string sql, ref int position)
    {
        SkipSpace(sql, ref position);
        if (sql[position] == '\'')
        {
            var text = new StringBuilder();
            position++;
            while (true)
            {
                var quote = sql.IndexOf('\'', position);
                if (quote < 0) throw Malformed("a string literal is not closed", sql, position);
                text.Append(sql, position, quote - position);
                if (quote + 1 < sql.Length && sql[quote + 1] == '\'')
                {
                    text.Append('\'');
                    position = quote + 2;
                    continue;
                }
                position = quote + 1;
                return text.ToString();
            }
        }
        var end = position;
        while (end < sql.Length && sql[end] is not (',' or ')') && !char.IsWhiteSpace(sql[end])) end++;
        var token = sql[position..end];
        position = end;
        return token.Equals("NULL", StringComparison.OrdinalIgnoreCase) ? null : token;
    }

    private static void SkipSpace(string sql, ref int position)
    {
        while (position < sql.Length && char.IsWhiteSpace(sql[position])) position++;
    }

    private static UserInputException Malformed(string what, string sql, int at)
    {
        var line = 1 + sql.AsSpan(0, Math.Min(at, sql.Length)).Count('\n');
        return new UserInputException($"the ICPC SQL script is not in the expected format ({what} near line {line}); use gnumed-server {GnumedServerPackage.Version}.");
    }
}
