using Babel.Modeling.Experts;
using Babel.Modeling.Reports;
using Xunit;

namespace Babel.UnitTests.Analysis;

/// <summary><c>report.html</c>'s extra sections: title, reading, table and images, in order, after the overview grid.</summary>
public class ReportSectionTests
{
    [Fact]
    public void Sections_render_in_order_with_images_embedded_and_missing_images_skipped()
    {
        using var scratch = new ScratchFolder();
        var profile = AnalysisTests.Profile("topk:1", ("eng", [[50, 50], [20, 80]]), ("fra", [[40, 60], [30, 70]]));
        profile.Save(scratch.Path);
        Directory.CreateDirectory(scratch.Combine("extra"));
        byte[] figure = [1, 2, 3, 4, 5, 6];
        File.WriteAllBytes(Path.Combine(scratch.Path, "extra", "figure.png"), figure);
        ReportSection[] sections =
        [
            new("First <finding>", "it reads 0.5 & more", ["extra/figure.png", "extra/absent.png"], "<table><tr><td>cell</td></tr></table>"),
            new("Second finding", "another reading", []),
        ];
        var html = File.ReadAllText(ActivationReport.Write(scratch.Path, profile, new Dictionary<string, string>(), sections));
        var grid = html.IndexOf("<h2>All languages</h2>", StringComparison.Ordinal);
        var first = html.IndexOf("<h2>First &lt;finding&gt;</h2><p>it reads 0.5 &amp; more</p><table><tr><td>cell</td></tr></table>", StringComparison.Ordinal);
        var second = html.IndexOf("<h2>Second finding</h2><p>another reading</p>", StringComparison.Ordinal);
        var perLanguage = html.IndexOf("<h2>eng</h2>", StringComparison.Ordinal);
        Assert.True(grid >= 0 && grid < first && first < second && second < perLanguage, $"{grid} {first} {second} {perLanguage}");
        Assert.Contains($"alt=\"extra/figure.png\" src=\"data:image/png;base64,{Convert.ToBase64String(figure)}\"", html, StringComparison.Ordinal);
        Assert.DoesNotContain("absent.png", html, StringComparison.Ordinal);
        // Without sections the page is as before: no extra headings.
        var plain = File.ReadAllText(ActivationReport.Write(scratch.Path, profile, new Dictionary<string, string>()));
        Assert.Equal(3, plain.Split("<h2>").Length - 1);
    }
}
