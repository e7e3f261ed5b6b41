using System.Text;
using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Storage;
using Babel.UnitTests.Deploy;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Babel.UnitTests.Chat;

/// <summary>
/// Real chat templates (Llama 3.1 and 3.2, Qwen2.5, Mistral v0.3, Gemma 2, Phi-3 mini, and two extras) render every
/// conversation of <c>conversations.json</c> byte for byte as Python's jinja2 does with transformers' settings: the
/// expected texts in <c>Expected/</c> were written by <c>make_fixtures.py</c>. Where jinja2 failed, Babel fails too, with
/// the template's own message when it called <c>raise_exception</c>.
/// </summary>
public class ChatTemplateFixtureTests
{
    private static readonly string Folder = Path.Combine(ManifestTests.RepositoryRoot, "tests", "Babel.UnitTests", "Chat");

    /// <summary>The fixed clock of make_fixtures.py's <c>strftime_now</c>.</summary>
    public static readonly DateTimeOffset FixedNow = new(2024, 9, 5, 14, 3, 9, TimeSpan.Zero);

    private static JsonObject Inputs => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "conversations.json")))!;

    private static JsonArray Templates => (JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "Templates", "templates.json")))!;

    public static TheoryData<string, string, bool> Cases()
    {
        var cases = new TheoryData<string, string, bool>();
        foreach (var template in Templates)
        {
            foreach (var conversation in Inputs["conversations"]!.AsArray())
            {
                cases.Add((string)template!["name"]!, (string)conversation!["name"]!, true);
                cases.Add((string)template["name"]!, (string)conversation["name"]!, false);
            }
        }
        return cases;
    }

    /// <summary>The template of fixture <paramref name="name"/> with its special tokens and the fixtures' clock.</summary>
    internal static ChatTemplate Load(string name)
    {
        var entry = Templates.Single(t => (string)t!["name"]! == name)!;
        var text = File.ReadAllText(Path.Combine(Folder, "Templates", name + ".jinja"), Encoding.UTF8);
        var tokens = new TokenizerConfig(null, new Dictionary<string, string>(), (string?)entry["bos_token"], (string?)entry["eos_token"], null, null);
        var clock = new FakeTimeProvider(FixedNow);
        clock.SetLocalTimeZone(TimeZoneInfo.Utc);
        return ChatTemplate.Parse(text, $"'{name}.jinja'", tokens, clock: clock);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_as_jinja2_does(string templateName, string conversationName, bool addGenerationPrompt)
    {
        var template = Load(templateName);
        var inputs = Inputs;
        var conversation = inputs["conversations"]!.AsArray().Single(c => (string)c!["name"]! == conversationName)!.AsObject();
        var tools = conversation["tools"] is { } toolSet ? inputs["tools"]![(string)toolSet!]!.AsArray() : null;
        var variables = conversation["variables"]?.AsObject().ToDictionary(p => p.Key, p => p.Value);
        var stem = Path.Combine(Folder, "Expected", templateName, $"{conversationName}.{(addGenerationPrompt ? "prompt" : "chat")}");

        if (File.Exists(stem + ".error.txt"))
        {
            var expected = File.ReadAllText(stem + ".error.txt", Encoding.UTF8);
            var error = Assert.Throws<UserInputException>(() => template.Render(conversation["messages"]!.AsArray(), addGenerationPrompt, tools, variables));
            var details = Assert.IsType<ChatTemplateException>(error.InnerException);
            Assert.Contains($"'{templateName}.jinja'", error.Message, StringComparison.Ordinal);
            Assert.Contains($"line {details.Line}, column {details.Column}", error.Message, StringComparison.Ordinal);
            const string Raised = "raise_exception: ";
            if (expected.StartsWith(Raised, StringComparison.Ordinal))
            {
                Assert.Equal(ChatTemplateFailure.Refused, details.Failure);
                Assert.Equal(expected[Raised.Length..], details.Detail);
            }
            else
            {
                Assert.Equal(ChatTemplateFailure.Render, details.Failure);
            }
            return;
        }

        var rendered = template.Render(conversation["messages"]!.AsArray(), addGenerationPrompt, tools, variables);
        var expectedBytes = File.ReadAllBytes(stem + ".txt");
        var actualBytes = Encoding.UTF8.GetBytes(rendered);
        if (expectedBytes.AsSpan().SequenceEqual(actualBytes)) return;
        var expectedText = Encoding.UTF8.GetString(expectedBytes);
        var at = Enumerable.Range(0, Math.Min(expectedText.Length, rendered.Length)).FirstOrDefault(i => expectedText[i] != rendered[i], Math.Min(expectedText.Length, rendered.Length));
        Assert.Fail($"{stem}.txt differs at character {at}: expected {Escape(expectedText, at)}, rendered {Escape(rendered, at)}.");
    }

    private static string Escape(string text, int at) =>
        JsonValue.Create(text.Substring(Math.Max(0, at - 40), Math.Min(text.Length, at + 40) - Math.Max(0, at - 40)))!.ToJsonString();

    [Fact]
    public void Every_fixture_file_belongs_to_a_case()
    {
        var expected = Cases().Select(c => ((string)c[0], (string)c[1], (bool)c[2]))
            .SelectMany(c =>
            {
                var stem = Path.Combine(Folder, "Expected", c.Item1, $"{c.Item2}.{(c.Item3 ? "prompt" : "chat")}");
                return new[] { stem + ".txt", stem + ".error.txt" };
            }).ToHashSet();
        var files = Templates.SelectMany(t => Directory.GetFiles(Path.Combine(Folder, "Expected", (string)t!["name"]!))).ToList();
        Assert.DoesNotContain(files, f => !expected.Contains(f));
        Assert.Equal(Cases().Count(), files.Count);
    }
}
