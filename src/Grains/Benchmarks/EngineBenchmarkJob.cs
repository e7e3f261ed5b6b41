using System.Globalization;
using Babel.Grains.Engine;
using Babel.Storage;

namespace Babel.Grains.Benchmarks;

/// <summary>Parameters of the engine benchmark's synthetic job: how many shards, and how long each one computes.</summary>
public sealed record EngineBenchmarkParameters(int Shards, int SleepMilliseconds = 0);

/// <summary>What the synthetic job assembles to: every shard counted exactly once, or the job is wrong.</summary>
public sealed record EngineBenchmarkResult(int Shards, long Counted);

/// <summary>
/// A job kind for <c>babel bench engine</c>: shards that do nothing (or sleep a given time) and count themselves, so what
/// is measured is the engine alone — leasing, journaling, result documents and completions — at any scale.
/// </summary>
public sealed class EngineBenchmarkJob : JobKind<EngineBenchmarkParameters, int, EngineBenchmarkResult>
{
    public const string KindName = "bench-engine";

    /// <summary>The totals' counter: 1 per shard.</summary>
    public const string Counted = "shards";

    public override string Name => KindName;

    protected override void Validate(EngineBenchmarkParameters p)
    {
        if (p.Shards is < 1 or > 10_000_000) throw new UserInputException($"The engine benchmark needs 1 to 10,000,000 shards (got {p.Shards}).");
        if (p.SleepMilliseconds is < 0 or > 600_000) throw new UserInputException($"The engine benchmark's shard time must be 0 to 600,000 ms (got {p.SleepMilliseconds}).");
    }

    public static string ShardId(int index) => string.Create(CultureInfo.InvariantCulture, $"s{index:D7}");

    protected override Task<IReadOnlyList<Shard<int>>> PlanAsync(EngineBenchmarkParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<Shard<int>>>([.. Enumerable.Range(0, p.Shards).Select(i => new Shard<int>(ShardId(i), i, 1))]);

    protected override ShardResult RunShard(ShardContext context, EngineBenchmarkParameters p, Shard<int> shard, CancellationToken cancellationToken)
    {
        if (p.SleepMilliseconds > 0) cancellationToken.WaitHandle.WaitOne(p.SleepMilliseconds);
        return ShardResult.Of(shard.Slice, [KeyValuePair.Create(Counted, 1L)]);
    }

    public override Task<EngineBenchmarkResult> AssembleAsync(FinishedJob<EngineBenchmarkParameters> job, CancellationToken cancellationToken)
    {
        var counted = job.Status.Totals.GetValueOrDefault(Counted);
        if (counted != job.Parameters.Shards)
            throw new InvalidOperationException($"Job {job.JobId} counted {counted} shards of {job.Parameters.Shards}: the engine lost or double-counted work.");
        return Task.FromResult(new EngineBenchmarkResult(job.Parameters.Shards, counted));
    }

    public override void Save(EngineBenchmarkResult result, string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, "bench-engine.json"), JobParameters.Serialize(result));
    }

    public override string Summary(EngineBenchmarkResult result) => string.Create(CultureInfo.InvariantCulture, $"{result.Counted} of {result.Shards} shards counted once each");
}
