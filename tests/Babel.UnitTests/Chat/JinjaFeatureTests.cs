using System.Text;
using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Modeling.Chat.Jinja;
using Babel.UnitTests.Deploy;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Babel.UnitTests.Chat;

/// <summary>
/// One small template per Jinja2 feature (<c>features.json</c>: whitespace control, literals, operators and their
/// precedence, attribute and item lookup, slicing, undefined values, tests, filters, string methods, loops, scoping,
/// namespaces, macros, globals, syntax errors) renders byte for byte as Python's jinja2 does with transformers'
/// settings (<c>Expected/features/</c>, written by <c>make_fixtures.py</c>), or fails the same way.
/// </summary>
public class JinjaFeatureTests
{
    private static readonly string Folder = Path.Combine(ManifestTests.RepositoryRoot, "tests", "Babel.UnitTests", "Chat");

    private static JsonArray Features => (JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "features.json")))!;

    public static TheoryData<string> Names() => [.. Features.Select(f => (string)f!["name"]!)];

    [Theory]
    [MemberData(nameof(Names))]
    public void Renders_as_jinja2_does(string name)
    {
        var feature = Features.Single(f => (string)f!["name"]! == name)!;
        var source = (string)feature["template"]!;
        var variables = feature["variables"]!.AsObject().ToDictionary(p => p.Key, p => ChatTemplate.FromJson(p.Value));
        var clock = new FakeTimeProvider(ChatTemplateFixtureTests.FixedNow);
        clock.SetLocalTimeZone(TimeZoneInfo.Utc);
        var stem = Path.Combine(Folder, "Expected", "features", name);

        if (File.Exists(stem + ".error.txt"))
        {
            var expected = File.ReadAllText(stem + ".error.txt", Encoding.UTF8);
            var error = Assert.ThrowsAny<JinjaException>(() => JinjaTemplate.Parse(source).Render(variables, clock));
            Assert.True(error.Position >= 0, $"The error '{error.Message}' has no position.");
            if (expected.StartsWith("TemplateSyntaxError: ", StringComparison.Ordinal)) Assert.IsType<JinjaSyntaxException>(error);
            else if (expected.StartsWith("raise_exception: ", StringComparison.Ordinal)) Assert.Equal(expected["raise_exception: ".Length..], Assert.IsType<JinjaRaisedException>(error).Message);
            else Assert.Equal(typeof(JinjaException), error.GetType());
            return;
        }

        var rendered = JinjaTemplate.Parse(source).Render(variables, clock);
        Assert.Equal(File.ReadAllBytes(stem + ".txt"), Encoding.UTF8.GetBytes(rendered));
    }

    [Fact]
    public void Every_feature_has_one_fixture()
    {
        var names = Features.Select(f => (string)f!["name"]!).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
        var files = Directory.GetFiles(Path.Combine(Folder, "Expected", "features")).Select(f => Path.GetFileName(f)!).Order().ToList();
        var expected = names.Select(n => File.Exists(Path.Combine(Folder, "Expected", "features", n + ".error.txt")) ? n + ".error.txt" : n + ".txt").Order().ToList();
        Assert.Equal(expected, files);
    }
}
