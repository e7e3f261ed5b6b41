using System.Diagnostics.Metrics;

namespace Babel.Modeling.Distillation;

/// <summary>Distillation instruments (meter <c>Babel.Distillation</c>), exported on each silo's <c>/metrics</c>.</summary>
public static class DistillationMetrics
{
    public const string MeterName = "Babel.Distillation";
    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> TeacherRequests = Meter.CreateCounter<long>("babel.distill.teacher.requests", "{request}", "Teacher calls sent, by teacher kind and outcome (ok, retry, failed).");
    public static readonly Counter<long> TokensIn = Meter.CreateCounter<long>("babel.distill.teacher.tokens.in", "{token}", "Prompt tokens the teacher counted.");
    public static readonly Counter<long> TokensOut = Meter.CreateCounter<long>("babel.distill.teacher.tokens.out", "{token}", "Completion tokens the teacher wrote.");
    public static readonly Histogram<double> Latency = Meter.CreateHistogram<double>("babel.distill.teacher.latency", "s", "Time of one teacher call (one HTTP request, or one local batch).");
    public static readonly Counter<long> Throttled = Meter.CreateCounter<long>("babel.distill.teacher.throttled", "{response}", "HTTP 429 responses from the teacher.");
    public static readonly Counter<long> Retries = Meter.CreateCounter<long>("babel.distill.teacher.retries", "{retry}", "Teacher calls retried after a 429, a 5xx, a timeout or a malformed response.");
    public static readonly Counter<long> CacheHits = Meter.CreateCounter<long>("babel.distill.cache.hits", "{request}", "Teacher calls answered from the cache.");
    public static readonly Counter<long> RecordsWritten = Meter.CreateCounter<long>("babel.distill.records", "{record}", "Chain-of-thought and evaluation records produced, by kind.");
    public static readonly Counter<long> StudentTokens = Meter.CreateCounter<long>("babel.distill.student.tokens", "{token}", "Input tokens (padding excluded) students trained on, by stage (self-evaluation, distillation).");
    public static readonly Counter<long> StudentSteps = Meter.CreateCounter<long>("babel.distill.student.steps", "{step}", "Optimizer steps of student training, by stage.");

    /// <summary>
    /// Records zero on every counter, once the exporter listens, so each series exists from the silo's start and
    /// rates and the teacher-throttling alert evaluate before the first teacher call or training step (Prometheus' advice for counters).
    /// </summary>
    public static void ExportZeros()
    {
        foreach (var counter in new[] { TeacherRequests, TokensIn, TokensOut, Throttled, Retries, CacheHits, RecordsWritten, StudentTokens, StudentSteps }) counter.Add(0);
    }
}
