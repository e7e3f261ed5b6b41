using System.Collections.Immutable;
using System.Globalization;
using Babel.Contracts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Training;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.Jobs;

/// <summary>Parameters of a distributed perplexity job: artifact keys of a model folder and a corpus folder, and how to slice the work.</summary>
public sealed record PerplexityJobParameters(
    string Model,
    string Corpus,
    IReadOnlyList<string> Languages,
    string Split = "heldout",
    int WindowLength = 256,
    int BatchSize = 8,
    int DocumentsPerShard = 16);

/// <summary>One shard: a contiguous slice of one language's documents in the split.</summary>
public sealed record PerplexityShardParameters(string Language, int Start, int Count);

/// <summary>
/// Per-language perplexity of a model over a corpus, sharded by language × slice of documents. Each shard's summed
/// NLL is rounded once to integer nano-nats, so the job's totals are exact integer sums whatever ran where.
/// </summary>
public sealed class PerplexityJob : IJobKind
{
    public const string KindName = "perplexity";
    /// <summary>NLL is summed in units of 1e-9 nats: exact integer sums, far below any perplexity digit reported.</summary>
    public const double NanonatsPerNat = 1e9;

    public string Name => KindName;

    public static string Serialize<T>(T value) => JobParameters.Serialize(value);

    public static PerplexityJobParameters ParseParameters(string json)
    {
        var parameters = JobParameters.Deserialize<PerplexityJobParameters>(json, KindName);
        if (string.IsNullOrEmpty(parameters.Model) || string.IsNullOrEmpty(parameters.Corpus))
        {
            throw new UserInputException("The perplexity job parameters need a model and a corpus.");
        }
        if (parameters.Languages is null || parameters.Languages.Count == 0) throw new UserInputException("The perplexity job names no language.");
        if (parameters.WindowLength < 2 || parameters.BatchSize < 1 || parameters.DocumentsPerShard < 1)
        {
            throw new UserInputException("Window length must be at least 2, and batch size and documents per shard at least 1.");
        }
        JobParameters.Split(parameters.Split);
        return parameters;
    }

    public async Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var corpus = Corpus.Open(await artifacts.LocalFolderAsync(p.Corpus, cancellationToken));
        var split = JobParameters.Split(p.Split);
        var plan = new List<ShardSpec>();
        foreach (var language in p.Languages)
        {
            var documents = corpus.ReadDocuments(language, split).Count();
            for (int start = 0, index = 0; start < documents; start += p.DocumentsPerShard, index++)
            {
                var count = Math.Min(p.DocumentsPerShard, documents - start);
                plan.Add(new ShardSpec(string.Create(CultureInfo.InvariantCulture, $"{language}-{index:D4}"),
                    Serialize(new PerplexityShardParameters(language, start, count)), count));
            }
        }
        return plan;
    }

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var slice = JobParameters.Deserialize<PerplexityShardParameters>(shard.Parameters, KindName);
        TorchRuntime.Initialize(context.Threads);
        var (model, loadedTokenizer) = context.Models.Get(p.Model, context.LocalFolder(p.Model, cancellationToken));
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; this job needs one.");
        var corpus = Corpus.Open(context.LocalFolder(p.Corpus, cancellationToken));
        var texts = corpus.ReadDocuments(slice.Language, JobParameters.Split(p.Split)).Skip(slice.Start).Take(slice.Count).Select(d => d.Text).ToList();
        if (texts.Count != slice.Count)
        {
            throw new InvalidOperationException($"Shard {shard.ShardId} expects {slice.Count} documents from {slice.Start} but the corpus has {texts.Count} there.");
        }
        cancellationToken.ThrowIfCancellationRequested();
        var sum = Perplexity.Accumulate(model, tokenizer, texts, p.WindowLength, p.BatchSize);
        var totals = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new[]
        {
            KeyValuePair.Create(TotalName(slice.Language, "nll_nanonats"), (long)Math.Round(sum.TotalNll * NanonatsPerNat)),
            KeyValuePair.Create(TotalName(slice.Language, "tokens"), sum.Tokens),
            KeyValuePair.Create(TotalName(slice.Language, "documents"), sum.Documents),
            KeyValuePair.Create(TotalName(slice.Language, "bytes"), sum.Bytes),
        });
        var content = JobParameters.SerializeToUtf8Bytes(new { shard = shard.ShardId, slice.Language, slice.Start, slice.Count, totals });
        return new ShardResult(content, totals);
    }

    public static string TotalName(string language, string quantity) => $"{language}.{quantity}";

    /// <summary>Per-language results from a finished job's totals.</summary>
    public static IReadOnlyList<PerplexityResult> Results(IReadOnlyList<string> languages, IReadOnlyDictionary<string, long> totals) =>
    [
        .. languages.Select(language =>
        {
            var tokens = totals.GetValueOrDefault(TotalName(language, "tokens"));
            var nll = totals.GetValueOrDefault(TotalName(language, "nll_nanonats")) / NanonatsPerNat;
            return new PerplexityResult(language, totals.GetValueOrDefault(TotalName(language, "documents")), tokens,
                totals.GetValueOrDefault(TotalName(language, "bytes")), tokens == 0 ? double.NaN : nll / tokens);
        }),
    ];
}
