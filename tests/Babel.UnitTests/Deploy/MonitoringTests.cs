using System.Collections.Immutable;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Silo;
using Babel.Storage.Artifacts;
using Babel.UnitTests.Silo;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Babel.UnitTests.Deploy;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    // Alone: OpenTelemetry exports every meter named Babel.Jobs in the process, so a job of a test running beside this one
    // would add its counts to this silo's scrape.
    public const string Name = "process-wide metrics";
}

/// <summary>
/// Every series the alert rules and the Grafana dashboard query is one a live silo exports: a real embedded silo runs a job
/// (with one failed attempt, so the failure counter exists too) and its <c>/metrics</c> scrape is compared with the names
/// the PromQL selects.
/// </summary>
[Collection(MetricsCollection.Name)]
public class MonitoringTests
{
    private static readonly string Monitoring = Path.Combine(ManifestTests.RepositoryRoot, "deploy", "k8s", "monitoring");

    private static IReadOnlyList<string> RuleExpressions() => PromQl.RuleExpressions(File.ReadAllText(Path.Combine(Monitoring, "prometheus-rules.yaml")));

    private static IReadOnlyList<string> DashboardExpressions() => PromQl.DashboardExpressions(File.ReadAllText(Path.Combine(Monitoring, "grafana-dashboard.json")));

    [Fact]
    public void The_tokenizer_finds_series_and_skips_functions_labels_ranges_keywords_and_numbers()
    {
        Assert.Equal(["babel_shards_failed_total"], PromQl.MetricNames("sum by (reason) (rate(babel_shards_failed_total{reason=\"error\"}[10m])) > 0.05"));
        Assert.Equal(["babel_shard_duration_seconds_bucket"], PromQl.MetricNames("histogram_quantile(0.95, sum by (le) (rate(babel_shard_duration_seconds_bucket[5m])))"));
        Assert.Equal(["a_total", "b_total", "c_total"], PromQl.MetricNames("(sum(increase(a_total[6h])) - sum(increase(b_total[6h] offset 1h)) > 0) and on() (sum(rate(c_total[10m])) == 1e3)").Order());
        Assert.Equal(["up"], PromQl.MetricNames("up{job=\"babel-metrics\", pod=~\"babel-.*\"} == 0"));
        Assert.Equal(["x_sum", "x_count"], PromQl.MetricNames("sum without (pod) (rate(x_sum[5m])) / ignoring(le) sum(rate(x_count[5m]))").OrderDescending());
        Assert.Empty(PromQl.MetricNames("vector(1) + scalar(time())"));
    }

    [Fact]
    public void The_rules_and_the_dashboard_hold_the_expected_queries()
    {
        var rules = RuleExpressions();
        Assert.Equal(7, rules.Count); // six alerts and the annotation's query
        Assert.Contains(rules, e => e.Contains("babel_shard_lease_renewals_total", StringComparison.Ordinal) && e.Contains("babel_jobs_running", StringComparison.Ordinal));
        Assert.Contains(rules, e => e.Contains("babel_distill_teacher_throttled_total", StringComparison.Ordinal));
        Assert.Contains(rules, e => e.Contains("babel_shards_leased_total", StringComparison.Ordinal));
        var dashboard = DashboardExpressions();
        Assert.True(dashboard.Count >= 15, $"only {dashboard.Count} dashboard queries");
        var names = dashboard.SelectMany(PromQl.MetricNames).ToHashSet();
        Assert.Contains(names, n => n.StartsWith("babel_", StringComparison.Ordinal));
        Assert.Contains(names, n => n.StartsWith("orleans_", StringComparison.Ordinal));
        Assert.Contains("babel_shard_duration_seconds_bucket", names);
        Assert.Contains("babel_shard_lease_renewals_total", names);
    }

    [Fact]
    public void The_dashboard_names_only_metrics_the_readme_documents_or_Orleans_exports()
    {
        var documented = ManifestTests.DocumentedMetrics();
        foreach (var name in DashboardExpressions().SelectMany(PromQl.MetricNames).Where(n => n.StartsWith("babel_", StringComparison.Ordinal)))
            Assert.True(documented.Contains(ManifestTests.WithoutHistogramSuffix(name)), $"{name} is used by the dashboard but not in README.md's metric table.");
    }

    [Fact]
    public async Task Every_series_of_the_alerts_and_the_dashboard_is_in_a_live_silo_scrape()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var scratch = new ScratchFolder();
        var probe = new ProbeJob();
        await using var app = await EmbeddedSiloHost.StartAsync(scratch, cpuSlots: 1, timeout.Token, services => services.AddSingleton<IJobKind>(probe));

        var client = new JobClient(app.Services.GetRequiredService<IGrainFactory>(), app.Services.GetRequiredService<IArtifactStore>(), app.Services.GetRequiredService<JobKindCatalog>());
        await client.SubmitAsync(probe, new ProbeParameters(), new JobOptions("monitoring-probe"), timeout.Token);
        var status = await client.WaitAsync("monitoring-probe", null, timeout.Token);
        Assert.Equal((JobPhase.Succeeded, ProbeJob.Shards, ProbeJob.Shards * ProbeJob.ItemsPerShard), (status.Phase, status.Done, status.ItemsDone));
        Assert.Equal(1, probe.Failures);

        // The job finished: its last counters are recorded, so one scrape holds every series.
        using var http = new HttpClient { BaseAddress = new Uri(Assert.Single(app.Urls)) };
        var exposition = await http.GetStringAsync(new Uri(HealthEndpoints.Metrics, UriKind.Relative), timeout.Token);
        var scraped = PromQl.ScrapedNames(exposition);

        var used = RuleExpressions().Concat(DashboardExpressions()).SelectMany(PromQl.MetricNames).ToHashSet();
        Assert.Contains("babel_shards_failed_total", used);
        Assert.Contains(used, n => n.StartsWith("orleans_", StringComparison.Ordinal));
        var missing = used.Where(n => !PromQl.PrometheusSeries.Contains(n) && !scraped.Contains(n)).Order().ToList();
        Assert.True(missing.Count == 0, $"Queried but not exported by the silo: {string.Join(", ", missing)}. Exported: {string.Join(", ", scraped.Order())}");

        // The values are the job's, not just the names: the job grain counted every shard once and the one failed attempt.
        Assert.Equal(ProbeJob.Shards, Sample(exposition, "babel_shards_completed_total"));
        Assert.Equal(ProbeJob.Shards * ProbeJob.ItemsPerShard, Sample(exposition, "babel_shard_items_total"));
        Assert.Equal(1, Sample(exposition, "babel_shards_failed_total{", "reason=\"error\""));
        Assert.Equal(1, Sample(exposition, "babel_jobs_finished_total{", "outcome=\"succeeded\""));

        await app.StopAsync(timeout.Token);
    }

    /// <summary>The sum of the samples of <paramref name="prefix"/> whose line contains <paramref name="label"/>.</summary>
    private static double Sample(string exposition, string prefix, string label = "") =>
        exposition.Split('\n')
            .Where(line => line.StartsWith(prefix, StringComparison.Ordinal) && (prefix.EndsWith('{') || line.Length > prefix.Length && line[prefix.Length] is '{' or ' ') && line.Contains(label, StringComparison.Ordinal))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The probe's parameters: none that matter.</summary>
    private sealed record ProbeParameters(string Name = "probe");

    /// <summary>A job kind without a model: three shards of two items; shard s1's first attempt throws, its retry succeeds.</summary>
    private sealed class ProbeJob : JobKind<ProbeParameters, int, long>
    {
        public const string KindName = "monitoring-probe";
        public const int Shards = 3;
        public const int ItemsPerShard = 2;
        private int _failures;

        public override string Name => KindName;

        public int Failures => Volatile.Read(ref _failures);

        protected override Task<IReadOnlyList<Shard<int>>> PlanAsync(ProbeParameters parameters, IArtifactResolver artifacts, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<Shard<int>>>([.. Enumerable.Range(0, Shards).Select(i => new Shard<int>($"s{i}", i, ItemsPerShard))]);

        protected override ShardResult RunShard(ShardContext context, ProbeParameters parameters, Shard<int> shard, CancellationToken cancellationToken)
        {
            if (shard.Slice == 1 && Interlocked.CompareExchange(ref _failures, 1, 0) == 0)
                throw new InvalidOperationException("The probe's one planned failure.");
            return ShardResult.Of(new { shard = shard.Id }, [KeyValuePair.Create("items", shard.Items)]);
        }

        public override Task<long> AssembleAsync(FinishedJob<ProbeParameters> job, CancellationToken cancellationToken) =>
            Task.FromResult(job.Status.Totals.GetValueOrDefault("items"));

        public override void Save(long result, string directory) => File.WriteAllText(Path.Combine(directory, "items.txt"), $"{result}\n");

        public override string Summary(long result) => $"{result} items";
    }
}
