using System.Collections.Immutable;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Text2Tree;
using Babel.Storage;
using Babel.Storage.Artifacts;

namespace Babel.Grains.Text2Tree;

/// <summary>
/// Parameters of a Text2Tree grid: the dataset's artifact key, the options every run shares, and the grid axes.
/// λ and τ only vary for the text2tree method (the baselines do not use them).
/// </summary>
public sealed record Text2TreeGridParameters(string Data, Text2TreeOptions Base, string[] Methods, long[] Seeds, double[] Lambdas, double[] Taus);

/// <summary>
/// A grid of Text2Tree and baseline runs on the job engine: every (method, λ, τ, seed) is a shard that trains and
/// evaluates one classifier and writes its <c>metrics.json</c> as the shard's result. A shard runs with the thread
/// count of its options (not the worker's), so its result does not depend on which worker ran it.
/// </summary>
public sealed class Text2TreeGridJob : IJobKind
{
    public const string KindName = "text2tree-grid";

    public string Name => KindName;

    public static Text2TreeGridParameters ParseParameters(string json)
    {
        var p = JobParameters.Deserialize<Text2TreeGridParameters>(json, KindName);
        if (string.IsNullOrEmpty(p.Data)) throw new UserInputException("the text2tree grid needs a dataset.");
        if (p.Methods is not { Length: > 0 } || p.Seeds is not { Length: > 0 } || p.Lambdas is not { Length: > 0 } || p.Taus is not { Length: > 0 })
        {
            throw new UserInputException("the text2tree grid needs at least one method, seed, λ and τ.");
        }
        foreach (var run in Runs(p)) run.Validate();
        return p;
    }

    /// <summary>Every run of the grid, in plan order.</summary>
    public static IReadOnlyList<Text2TreeOptions> Runs(Text2TreeGridParameters p)
    {
        var runs = new List<Text2TreeOptions>();
        foreach (var method in p.Methods.Select(Text2TreeMethods.Require).Distinct(StringComparer.Ordinal))
        {
            var settings = method == Text2TreeMethods.Text2Tree
                ? p.Lambdas.SelectMany(l => p.Taus.Select(t => (Lambda: l, Tau: t)))
                : [(p.Base.Lambda, p.Base.Tau)];
            foreach (var (lambda, tau) in settings.Distinct())
            {
                foreach (var seed in p.Seeds.Distinct())
                {
                    runs.Add(p.Base with { Method = method, Lambda = lambda, Tau = tau, Seed = seed });
                }
            }
        }
        return runs;
    }

    /// <summary>The shard id of a run, e.g. <c>text2tree-l0.5-t0.1-s1</c>.</summary>
    public static string ShardId(Text2TreeOptions run) => run.Method == Text2TreeMethods.Text2Tree
        ? string.Create(CultureInfo.InvariantCulture, $"{run.Method}-l{run.Lambda:R}-t{run.Tau:R}-s{run.Seed}")
        : string.Create(CultureInfo.InvariantCulture, $"{run.Method}-s{run.Seed}");

    public Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        IReadOnlyList<ShardSpec> shards = [.. Runs(p).Select(run => new ShardSpec(ShardId(run), JobParameters.Serialize(run), run.Steps))];
        return Task.FromResult(shards);
    }

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var run = JobParameters.Deserialize<Text2TreeOptions>(shard.Parameters, KindName).Validate();
        var data = context.LocalFolder(p.Data, cancellationToken);
        // A retried shard on the same machine resumes from the run's checkpoint.
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(p.Data + "|" + shard.Parameters)))[..16];
        var work = Path.Combine(Path.GetTempPath(), "babel-text2tree", key);
        var metrics = Text2TreeTrainer.Train(data, run, work, cancellationToken: cancellationToken);
        var content = JobParameters.SerializeToUtf8Bytes(metrics);
        Directory.Delete(work, recursive: true);
        return new ShardResult(content, ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal,
            [KeyValuePair.Create("runs", 1L), KeyValuePair.Create("steps", (long)run.Steps)]));
    }

    /// <summary>Reads every run's metrics of a finished grid job, in plan order.</summary>
    public static Task<IReadOnlyList<Text2TreeMetrics>> AssembleAsync(IArtifactStore store, string jobId, Text2TreeGridParameters p, CancellationToken cancellationToken) =>
        ShardArtifacts.ReadAsync<Text2TreeMetrics>(store, jobId, Runs(p).Select(ShardId), cancellationToken);
}
