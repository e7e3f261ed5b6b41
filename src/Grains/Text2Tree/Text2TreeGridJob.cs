using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Babel.Grains.Engine;
using Babel.Modeling.Text2Tree;
using Babel.Storage;

namespace Babel.Grains.Text2Tree;

/// <summary>
/// Parameters of a Text2Tree grid: the dataset's artifact key, the options every run shares, and the grid axes.
/// λ and τ only vary for the methods with a label tree (text2tree, text2tree-ssl; the baselines do not use them), and
/// text2tree-ssl skips λ = 0, where it would be plain fine-tuning.
/// </summary>
public sealed record Text2TreeGridParameters(string Data, Text2TreeOptions Base, string[] Methods, long[] Seeds, double[] Lambdas, double[] Taus);

/// <summary>
/// A grid of Text2Tree and baseline runs on the job engine: every (method, λ, τ, seed) is a shard that trains and
/// evaluates one classifier and writes its <c>metrics.json</c> as the shard's result; the job assembles them into the
/// grid's <see cref="GridReport"/>. A shard runs with the thread count of its options (not the worker's), so its
/// result does not depend on which worker ran it.
/// </summary>
public sealed class Text2TreeGridJob : JobKind<Text2TreeGridParameters, Text2TreeOptions, GridReport>
{
    public const string KindName = "text2tree-grid";

    /// <summary>A run takes minutes: a lease long enough that a busy worker is not mistaken for a dead one.</summary>
    public static JobOptions SubmitOptions { get; } = new(LeaseDuration: TimeSpan.FromMinutes(30));

    public override string Name => KindName;

    protected override void Validate(Text2TreeGridParameters p)
    {
        if (string.IsNullOrEmpty(p.Data)) throw new UserInputException("the text2tree grid needs a dataset.");
        if (p.Base is null || p.Methods is not { Length: > 0 } || p.Seeds is not { Length: > 0 } || p.Lambdas is not { Length: > 0 } || p.Taus is not { Length: > 0 })
        {
            throw new UserInputException("the text2tree grid needs at least one method, seed, λ and τ.");
        }
        var runs = Runs(p);
        if (runs.Count == 0) throw new UserInputException("text2tree-ssl at λ = 0 is plain fine-tuning; give it a λ above 0 or use finetune.");
        foreach (var run in runs) run.Validate();
    }

    /// <summary>Every run of the grid, in plan order.</summary>
    public static IReadOnlyList<Text2TreeOptions> Runs(Text2TreeGridParameters p)
    {
        var runs = new List<Text2TreeOptions>();
        foreach (var method in p.Methods.Select(Text2TreeMethods.Require).Distinct(StringComparer.Ordinal))
        {
            var settings = Text2TreeMethods.UsesLabelTree(method)
                ? p.Lambdas.Where(l => Text2TreeMethods.RunsAt(method, l)).SelectMany(l => p.Taus.Select(t => (Lambda: l, Tau: t)))
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
    public static string ShardId(Text2TreeOptions run) => Text2TreeMethods.UsesLabelTree(run.Method)
        ? string.Create(CultureInfo.InvariantCulture, $"{run.Method}-l{run.Lambda:R}-t{run.Tau:R}-s{run.Seed}")
        : string.Create(CultureInfo.InvariantCulture, $"{run.Method}-s{run.Seed}");

    protected override Task<IReadOnlyList<Shard<Text2TreeOptions>>> PlanAsync(Text2TreeGridParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        IReadOnlyList<Shard<Text2TreeOptions>> shards = [.. Runs(p).Select(run => new Shard<Text2TreeOptions>(ShardId(run), run, run.Steps))];
        return Task.FromResult(shards);
    }

    protected override ShardResult RunShard(ShardContext context, Text2TreeGridParameters p, Shard<Text2TreeOptions> shard, CancellationToken cancellationToken)
    {
        var run = shard.Slice.Validate();
        var data = context.LocalFolder(p.Data, cancellationToken);
        // A retried shard on the same machine resumes from the run's checkpoint.
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(p.Data + "|" + JobParameters.Serialize(run))))[..16];
        var work = Path.Combine(Path.GetTempPath(), "babel-text2tree", key);
        // The dataset is read once per worker process and shared by every run of the grid with the same subsets.
        var dataset = context.Cache.GetOrAdd(string.Create(CultureInfo.InvariantCulture, $"{p.Data}|{run.MaxTrain}|{run.MaxEval}"),
            () => Text2TreeData.Load(data, run.MaxTrain, run.MaxEval), _ => 2 * Directory.EnumerateFiles(data, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length));
        var metrics = Text2TreeTrainer.Train(dataset, run, work, data, cancellationToken: cancellationToken);
        Directory.Delete(work, recursive: true);
        return ShardResult.Of(metrics, [KeyValuePair.Create("runs", 1L), KeyValuePair.Create("steps", (long)run.Steps)]);
    }

    public override async Task<GridReport> AssembleAsync(FinishedJob<Text2TreeGridParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var runs = await job.ReadShardsAsync<Text2TreeMetrics>(Runs(p).Select(ShardId), cancellationToken);
        return new GridReport(new GridSetup(job.JobId, job.Origin.FolderOf(p.Data) ?? p.Data, p.Base), runs);
    }

    public override void Save(GridReport result, string directory) => result.Save(directory);

    public override string Summary(GridReport result) => string.Create(CultureInfo.InvariantCulture,
        $"text2tree grid {result.Setup.Job}: {result.Runs.Count} runs in {result.Rows.Count} configurations; best test macro-F1 {result.Rows.Max(r => r.MacroF1.Mean):F4} ({result.Rows.MaxBy(r => r.MacroF1.Mean)!.Label})");
}
