using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s;

namespace Babel.UnitTests.Deploy;

/// <summary>
/// The PromQL of deploy/k8s/monitoring (alert rules, the queries their annotations run, the Grafana dashboard) and the series
/// names an expression selects, found by a small tokenizer: strings, label matchers, ranges and grouping label lists are
/// removed, then every identifier that is not a function call, a keyword or part of a number is a series name. Names are
/// exactly what Prometheus stores (<c>_total</c>, <c>_bucket</c>, <c>_sum</c>, <c>_count</c> included), to compare with a scrape.
/// </summary>
internal static partial class PromQl
{
    private static readonly HashSet<string> Keywords =
        ["and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "inf", "nan", "atan2"];

    /// <summary>Series Prometheus makes itself for every target, not exported by the silo.</summary>
    public static readonly HashSet<string> PrometheusSeries = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];

    /// <summary>The series names <paramref name="expression"/> selects.</summary>
    public static IReadOnlySet<string> MetricNames(string expression)
    {
        var text = Strings().Replace(expression, " ");
        text = LabelMatchers().Replace(text, " ");
        text = Ranges().Replace(text, " ");
        text = Grouping().Replace(text, " ");
        text = Offset().Replace(text, " ");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match token in Tokens().Matches(text))
        {
            if (!token.Groups["id"].Success) continue;
            var name = token.Groups["id"].Value;
            var isCall = CallFollows().IsMatch(text.AsSpan(token.Index + token.Length));
            if (!isCall && !Keywords.Contains(name.ToLowerInvariant()))
                names.Add(name);
        }
        return names;
    }

    /// <summary>Every expression of the PrometheusRule: rule <c>expr</c>s and the <c>query "..."</c> calls in annotations.</summary>
    public static IReadOnlyList<string> RuleExpressions(string prometheusRuleYaml)
    {
        var document = KubernetesYaml.Deserialize<Dictionary<string, object>>(prometheusRuleYaml);
        var expressions = new List<string>();
        foreach (var group in List(Map(document["spec"])["groups"]))
        {
            foreach (var rule in List(Map(group)["rules"]))
            {
                var fields = Map(rule);
                expressions.Add((string)fields["expr"]);
                if (fields.TryGetValue("annotations", out var annotations))
                {
                    foreach (var text in Map(annotations).Values.OfType<string>())
                        expressions.AddRange(TemplateQuery().Matches(text).Select(m => Regex.Unescape(m.Groups[1].Value)));
                }
            }
        }
        return expressions;
    }

    /// <summary>Every <c>expr</c> of every panel (rows' nested panels included) of a Grafana dashboard.</summary>
    public static IReadOnlyList<string> DashboardExpressions(string dashboardJson)
    {
        var expressions = new List<string>();
        void Visit(JsonArray? panels)
        {
            foreach (var panel in panels ?? [])
            {
                foreach (var target in panel?["targets"]?.AsArray() ?? [])
                {
                    if (target?["expr"]?.GetValue<string>() is { } expr) expressions.Add(expr);
                }
                Visit(panel?["panels"]?.AsArray());
            }
        }
        Visit(JsonNode.Parse(dashboardJson)!["panels"]!.AsArray());
        return expressions;
    }

    /// <summary>The sample names of a Prometheus text exposition.</summary>
    public static HashSet<string> ScrapedNames(string exposition) =>
        exposition.Split('\n')
            .Where(line => line.Length > 0 && line[0] != '#')
            .Select(line => line[..line.IndexOfAny(['{', ' '])])
            .ToHashSet(StringComparer.Ordinal);

    private static Dictionary<object, object> Map(object value) => (Dictionary<object, object>)value;

    private static List<object> List(object value) => (List<object>)value;

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")]
    private static partial Regex Strings();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex LabelMatchers();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Ranges();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", RegexOptions.IgnoreCase)]
    private static partial Regex Grouping();

    [GeneratedRegex(@"\boffset\s+-?[0-9a-z]+", RegexOptions.IgnoreCase)]
    private static partial Regex Offset();

    [GeneratedRegex(@"(?<num>(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[a-z]*)|(?<id>[a-zA-Z_:][a-zA-Z0-9_:]*)")]
    private static partial Regex Tokens();

    [GeneratedRegex(@"^\s*\(")]
    private static partial Regex CallFollows();

    [GeneratedRegex("query\\s+\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex TemplateQuery();
}
