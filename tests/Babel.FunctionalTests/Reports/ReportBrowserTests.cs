using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Babel.FunctionalTests.Cluster;
using Xunit;

namespace Babel.FunctionalTests.Reports;

/// <summary>
/// A profile run's <c>report.html</c>, made by the real CLI (<c>babel analyze</c> and <c>babel report</c>) from an
/// <c>activations.json</c>, opened in a real headless browser (Debian's chromium, which <c>.ci/run</c> installs): every
/// image decodes and every section renders.
/// </summary>
public sealed class ReportBrowserTests : IDisposable
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);
    private readonly string _folder = Directory.CreateTempSubdirectory("babel-report-").FullName;

    [Fact]
    public async Task Every_image_of_the_report_loads_and_every_section_renders_in_chromium()
    {
        string[] languages = ["deu", "eng", "fra", "rus", "spa"];
        var run = Path.Combine(_folder, "run");
        WriteActivations(run, languages, layers: 3, experts: 8);
        var cli = BabelCli.Standalone(_folder);
        var analyzed = await cli.RunAsync(_timeout, "analyze", "--run", run, "--permutations", "50");
        Assert.True(analyzed.ExitCode == 0, analyzed.ToString());
        var reported = await cli.RunAsync(_timeout, "report", "--run", run);
        Assert.True(reported.ExitCode == 0, reported.ToString());

        var html = await File.ReadAllTextAsync(Path.Combine(run, "report.html"));
        var images = Regex.Count(html, "<img ");
        Assert.True(images >= 1 + languages.Length, $"{images} images");
        var sections = Regex.Matches(html, "<h2>([^<]*)</h2>").Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("All languages", sections);
        Assert.All(languages, l => Assert.Contains(l, sections));
        // The analyses add their findings between the overview and the per-language heatmaps.
        Assert.True(sections.Count >= 1 + languages.Length + 4, string.Join(" | ", sections));

        var rendered = await RenderAsync(html);
        Assert.Equal(images, (int)rendered["images"]!);
        Assert.Equal(images, (int)rendered["decoded"]!);
        Assert.Equal(sections.Count, (int)rendered["sections"]!);
        Assert.Equal(sections.Count, (int)rendered["visibleSections"]!);
    }

    /// <summary>Loads the page in chromium with a probe that counts decoded images and laid-out headings once the page has loaded.</summary>
    private async Task<JsonObject> RenderAsync(string html)
    {
        const string probe = """
            <script>
            window.addEventListener('load', () => {
              const images = [...document.images];
              const headings = [...document.querySelectorAll('h2')];
              const out = document.createElement('pre');
              out.id = 'babel-probe';
              out.textContent = JSON.stringify({
                images: images.length,
                decoded: images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().height > 0).length,
                sections: headings.length,
                visibleSections: headings.filter(h => h.getBoundingClientRect().height > 0 && h.textContent.trim().length > 0).length,
              });
              document.body.appendChild(out);
            });
            </script>
            """;
        var page = Path.Combine(_folder, "probe.html");
        await File.WriteAllTextAsync(page, html.Replace("</body>", probe + "</body>", StringComparison.Ordinal));
        var start = new ProcessStartInfo(Chromium())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "--headless", "--no-sandbox", "--disable-gpu", $"--user-data-dir={Path.Combine(_folder, "profile")}", "--virtual-time-budget=10000", "--dump-dom", new Uri(page).AbsoluteUri })
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(_timeout);
        await process.WaitForExitAsync(timeout.Token);
        var dom = await stdout;
        var match = Regex.Match(dom, "<pre id=\"babel-probe\">([^<]*)</pre>");
        Assert.True(match.Success, $"chromium printed no probe (exit {process.ExitCode}):\n{(await stderr)[..Math.Min(2000, (await stderr).Length)]}");
        return JsonNode.Parse(System.Net.WebUtility.HtmlDecode(match.Groups[1].Value))!.AsObject();
    }

    /// <summary>Debian's chromium on PATH; a clear error, not a skip, when it is missing.</summary>
    private static string Chromium() =>
        new[] { "chromium", "chromium-browser" }
            .SelectMany(name => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/bin").Select(dir => Path.Combine(dir, name)))
            .FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("chromium is not installed; .ci/run installs Debian's chromium package for this test (apt-get install chromium).");

    /// <summary>An activations.json of ARCHITECTURE.md's schema with deterministic, language-dependent counts under topk:2.</summary>
    private static void WriteActivations(string run, IReadOnlyList<string> languages, int layers, int experts)
    {
        Directory.CreateDirectory(run);
        const long tokens = 1000;
        var json = new StringBuilder();
        json.Append(CultureInfo.InvariantCulture, $"{{\"model\":\"models/report-test\",\"layers\":{layers},\"experts\":{experts},\"rule\":\"topk:2\",\"languages\":{{");
        for (var l = 0; l < languages.Count; l++)
        {
            var rows = Enumerable.Range(0, layers).Select(layer =>
            {
                // Each token activates 2 of the experts: counts sum to 2 × tokens in every layer.
                var weights = Enumerable.Range(0, experts).Select(e => 1 + ((e * 7 + layer * 3 + l * 5) % 11) + (e == (l + layer) % experts ? 20 : 0)).ToArray();
                var counts = weights.Select(w => 2 * tokens * w / weights.Sum()).ToArray();
                counts[0] += 2 * tokens - counts.Sum();
                return "[" + string.Join(",", counts) + "]";
            });
            json.Append(CultureInfo.InvariantCulture, $"{(l > 0 ? "," : "")}\"{languages[l]}\":{{\"tokens\":{tokens},\"counts\":[{string.Join(",", rows)}]}}");
        }
        json.Append("}}\n");
        File.WriteAllText(Path.Combine(run, "activations.json"), json.ToString());
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
