using System.Text;

namespace Babel.Modeling.Reports;

/// <summary>The HTML tables of reports: a header row and rows of text cells, each escaped (&amp;, &lt;, &gt;, quotes; other characters stay as they are).</summary>
public static class HtmlTable
{
    public static string Of(IEnumerable<string> headers, IEnumerable<IEnumerable<string>> rows)
    {
        var html = new StringBuilder("<table><tr>");
        foreach (var header in headers) html.Append("<th>").Append(Escape(header)).Append("</th>");
        html.Append("</tr>");
        foreach (var row in rows)
        {
            html.Append("<tr>");
            foreach (var cell in row) html.Append("<td>").Append(Escape(cell)).Append("</td>");
            html.Append("</tr>");
        }
        return html.Append("</table>").ToString();
    }

    private static string Escape(string text) =>
        text.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
            .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal);
}
