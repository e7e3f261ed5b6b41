using System.Globalization;
using Babel.FunctionalTests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Monitoring;

/// <summary>
/// The shipped monitoring against a real Prometheus: <c>promtool</c> accepts the alert rules (taken from
/// deploy/k8s/monitoring/prometheus-rules.yaml, the one copy) and a scrape configuration like the pods' annotations describe;
/// Prometheus scrapes a live silo while it runs a job, reports the target up, returns the job's Babel series through its
/// query API with the silo's own value, and evaluates every alert rule without error.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PrometheusTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _jobTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan _conditionTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The rule file Prometheus reads: the PrometheusRule's <c>spec</c> (<c>groups:</c> ...), unindented.</summary>
    public static string RuleFile(string prometheusRuleYaml)
    {
        var lines = prometheusRuleYaml.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var spec = Array.IndexOf(lines, "spec:");
        if (spec < 0) throw new InvalidOperationException("The PrometheusRule has no top-level 'spec:' line.");
        var body = lines.Skip(spec + 1).ToList();
        if (body.Any(l => l.Length > 0 && !l.StartsWith("  ", StringComparison.Ordinal)))
            throw new InvalidOperationException("'spec:' must be the PrometheusRule's last top-level field.");
        return string.Join('\n', body.Select(l => l.Length >= 2 ? l[2..] : l));
    }

    private static string ShippedRules() =>
        RuleFile(File.ReadAllText(Path.Combine(BuildOutputs.RepositoryRoot, "deploy", "k8s", "monitoring", "prometheus-rules.yaml")));

    /// <summary>One scrape job named like the ServiceMonitor's Service (the alerts select job="babel-metrics"), every second.</summary>
    private static string Configuration(int siloHttpPort) => $"""
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
          evaluation_interval: 1s
        rule_files:
          - rules.yml
        scrape_configs:
          - job_name: babel-metrics
            metrics_path: /metrics
            static_configs:
              - targets: ["127.0.0.1:{siloHttpPort.ToString(CultureInfo.InvariantCulture)}"]
        """;

    [Fact]
    public async Task Promtool_accepts_the_shipped_rules_and_the_scrape_configuration()
    {
        using var timeout = new CancellationTokenSource(_conditionTimeout);
        var folder = Directory.CreateTempSubdirectory("babel-promtool-").FullName;
        try
        {
            var rules = Path.Combine(folder, "rules.yml");
            await File.WriteAllTextAsync(rules, ShippedRules(), timeout.Token);
            await File.WriteAllTextAsync(Path.Combine(folder, "prometheus.yml"), Configuration(8080), timeout.Token);

            var checkRules = await Prometheus.PromtoolAsync(timeout.Token, "check", "rules", rules);
            Assert.True(checkRules.ExitCode == 0, checkRules.Output);
            Assert.Contains("SUCCESS: 6 rules found", checkRules.Output, StringComparison.Ordinal);
            var checkConfig = await Prometheus.PromtoolAsync(timeout.Token, "check", "config", Path.Combine(folder, "prometheus.yml"));
            Assert.True(checkConfig.ExitCode == 0, checkConfig.Output);

            // promtool is not lenient: a broken expression fails, so the passes above mean something.
            await File.WriteAllTextAsync(rules, ShippedRules().Replace("> 0.05", "> > 0.05", StringComparison.Ordinal), timeout.Token);
            Assert.NotEqual(0, (await Prometheus.PromtoolAsync(timeout.Token, "check", "rules", rules)).ExitCode);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task Prometheus_scrapes_a_silo_running_a_job_and_answers_with_its_Babel_series()
    {
        using var timeout = new CancellationTokenSource(_jobTimeout + _conditionTimeout);
        await using var cluster = await LocalCluster.StartAsync(silos: 1);
        var silo = cluster.Silos[0];
        await using var prometheus = await Prometheus.StartAsync(Configuration(silo.HttpPort), new Dictionary<string, string> { ["rules.yml"] = ShippedRules() }, timeout.Token);

        await WaitForAsync(async () =>
        {
            var targets = (await prometheus.ApiAsync("/api/v1/targets", timeout.Token))["activeTargets"]!.AsArray();
            return targets.Count == 1 && (string?)targets[0]!["health"] == "up" && (string?)targets[0]!["labels"]!["job"] == "babel-metrics";
        }, "the silo target is up", prometheus);
        Assert.Equal(1, Prometheus.Scalar(await prometheus.QueryAsync("sum(up{job=\"babel-metrics\"})", timeout.Token)));

        // A job with a few shards, so it ends in seconds on one worker (after the tokenize job it is planned from: two jobs).
        var result = await cluster.Cli.RunAsync(_jobTimeout,
            "perplexity", "--model", inputs.Model, "--corpus", inputs.Corpus, "--split", "all", "--documents-per-shard", "8", "--cluster", "--job-id", "prometheus");
        output.WriteLine($"job: {result.Elapsed.TotalSeconds:F1} s");
        Assert.True(result.ExitCode == 0, result.ToString());
        var completed = SiloProcess.Counter(await silo.ScrapeMetricsAsync(), "babel_shards_completed_total");
        Assert.True(completed > 0, "The silo counted no completed shard.");

        // Prometheus holds the same counts once it has scraped after the job ended (the counters no longer move). The job
        // grain counts the finished job after the last completion, so a scrape in between has the one and not the other.
        await WaitForAsync(async () =>
                Prometheus.Scalar(await prometheus.QueryAsync("sum(babel_shards_completed_total{job=\"babel-metrics\"})", timeout.Token)) == completed
                && Prometheus.Scalar(await prometheus.QueryAsync("sum(babel_jobs_finished_total{job=\"babel-metrics\"})", timeout.Token)) == 2,
            $"Prometheus returns babel_shards_completed_total = {completed} and two finished jobs", prometheus);
        var submitted = await prometheus.QueryAsync("babel_jobs_submitted_total", timeout.Token);
        Assert.Equal(["perplexity", "tokenize"], submitted.Select(s => (string?)s!["metric"]!["kind"]).Order(StringComparer.Ordinal));
        Assert.Equal(2, Prometheus.Scalar(await prometheus.QueryAsync("sum(babel_jobs_finished_total{outcome=\"succeeded\"})", timeout.Token)));
        Assert.NotEmpty(await prometheus.QueryAsync("babel_shard_duration_seconds_bucket", timeout.Token));
        Assert.NotEmpty(await prometheus.QueryAsync("orleans_catalog_activations", timeout.Token));

        // Every alert rule evaluates against the real series without error (none fires: the silo is up and nothing failed).
        await WaitForAsync(async () =>
        {
            var rules = (await prometheus.ApiAsync("/api/v1/rules", timeout.Token))["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).ToList();
            return rules.Count == 6 && rules.All(r => (string?)r!["health"] == "ok" && (string?)r!["lastError"] is null or "");
        }, "every rule evaluated with health ok", prometheus);
        Assert.Empty((await prometheus.ApiAsync("/api/v1/alerts", timeout.Token))["alerts"]!.AsArray());
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what, Prometheus prometheus)
    {
        var deadline = DateTime.UtcNow + _conditionTimeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Not within {_conditionTimeout.TotalSeconds:0} s: {what}. Prometheus' output:\n{prometheus.OutputTail()}");
            await Task.Delay(200);
        }
    }
}
