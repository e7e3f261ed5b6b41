using System.Globalization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Training;
using Babel.Grains.Engine;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.LanguageModels;

/// <summary>
/// Parameters of a distributed perplexity job: artifact keys of a model folder and a corpus folder, how to slice the work,
/// and the token stream of every language (<see cref="TokenizeJob"/>), whose document counts the plan is made from.
/// </summary>
public sealed record PerplexityJobParameters(
    string Model,
    string Corpus,
    IReadOnlyList<string> Languages,
    string Split = "heldout",
    int WindowLength = 256,
    int BatchSize = 8,
    int DocumentsPerShard = 16,
    IReadOnlyList<LanguageTokens>? Streams = null,
    string Dtype = "float32")
{
    /// <summary>What the tokenize job must produce for this job: the languages' streams of the split.</summary>
    public TokenizeJobParameters TokenizeParameters() => new(Model, Corpus, Languages, Split);
}

/// <summary>One shard: a contiguous slice of one language's documents in the split.</summary>
public sealed record PerplexityShard(string Language, int Start, int Count);

/// <summary>
/// Per-language perplexity of a model over a corpus, sharded by language × slice of documents. Each shard's summed
/// NLL is rounded once to integer nano-nats, so the job's totals are exact integer sums whatever ran where.
/// </summary>
public sealed class PerplexityJob : JobKind<PerplexityJobParameters, PerplexityShard, PerplexityReport>
{
    public const string KindName = "perplexity";
    /// <summary>NLL is summed in units of 1e-9 nats: exact integer sums, far below any perplexity digit reported.</summary>
    public const double NanonatsPerNat = 1e9;

    public override string Name => KindName;

    protected override void Validate(PerplexityJobParameters parameters)
    {
        if (string.IsNullOrEmpty(parameters.Model) || string.IsNullOrEmpty(parameters.Corpus))
        {
            throw new UserInputException("The perplexity job parameters need a model and a corpus.");
        }
        JobParameters.Languages(parameters.Languages, KindName);
        if (parameters.DocumentsPerShard < 1) throw new UserInputException($"--documents-per-shard must be at least 1 (got {parameters.DocumentsPerShard}).");
        if (parameters.WindowLength < 2 || parameters.BatchSize < 1) throw new UserInputException("The window length must be at least 2 and the batch size at least 1.");
        JobParameters.Split(parameters.Split);
        ModelDtypes.ParseForJob(parameters.Dtype);
    }

    protected override void ValidatePlanningInputs(PerplexityJobParameters parameters)
    {
        TokenizeJob.RequireStreams(parameters.Streams, parameters.Languages, KindName);
    }

    /// <summary>Slices of each language's documents, from the streams' document counts: nothing is read on the client.</summary>
    protected override Task<IReadOnlyList<Shard<PerplexityShard>>> PlanAsync(PerplexityJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var plan = new List<Shard<PerplexityShard>>();
        foreach (var language in p.Languages)
        {
            var documents = checked((int)TokenizeJob.StreamOf(p.Streams!, language).Documents);
            for (int start = 0, index = 0; start < documents; start += p.DocumentsPerShard, index++)
            {
                var count = Math.Min(p.DocumentsPerShard, documents - start);
                plan.Add(new(string.Create(CultureInfo.InvariantCulture, $"{language}-{index:D4}"), new PerplexityShard(language, start, count), count));
            }
        }
        return Task.FromResult<IReadOnlyList<Shard<PerplexityShard>>>(plan);
    }

    protected override ShardResult RunShard(ShardContext context, PerplexityJobParameters p, Shard<PerplexityShard> shard, CancellationToken cancellationToken)
    {
        var slice = shard.Slice;
        TorchRuntime.Initialize(context.Threads);
        var (model, loadedTokenizer) = context.Models.Get(p.Model, context.LocalFolder(p.Model, cancellationToken), ModelDtypes.ParseForJob(p.Dtype));
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; this job needs one.");
        var texts = Texts(context, p.Corpus, slice.Language, p.Split, cancellationToken).Skip(slice.Start).Take(slice.Count).ToList();
        if (texts.Count != slice.Count)
        {
            throw new InvalidOperationException($"Shard {shard.Id} expects {slice.Count} documents from {slice.Start} but the corpus has {texts.Count} there.");
        }
        cancellationToken.ThrowIfCancellationRequested();
        var sum = Perplexity.Accumulate(model, tokenizer, texts, p.WindowLength, p.BatchSize);
        KeyValuePair<string, long>[] totals =
        [
            new(TotalName(slice.Language, "nll_nanonats"), (long)Math.Round(sum.TotalNll * NanonatsPerNat)),
            new(TotalName(slice.Language, "tokens"), sum.Tokens),
            new(TotalName(slice.Language, "documents"), sum.Documents),
            new(TotalName(slice.Language, "bytes"), sum.Bytes),
        ];
        return ShardResult.Of(new { shard = shard.Id, slice.Language, slice.Start, slice.Count, totals = totals.ToDictionary() }, totals);
    }

    public static string TotalName(string language, string quantity) => $"{language}.{quantity}";

    /// <summary>
    /// The texts of <paramref name="language"/>'s documents of the split, in corpus order, read and parsed once per worker
    /// process and shared by every shard of the language (a shard otherwise parses the file up to its slice). A language
    /// too large for the worker's cache is read lazily by each shard instead, as far as the shard needs.
    /// </summary>
    public static IEnumerable<string> Texts(ShardContext context, string corpusKey, string language, string split, CancellationToken cancellationToken)
    {
        var corpus = Corpus.Open(context.LocalFolder(corpusKey, cancellationToken));
        var documents = () => corpus.ReadDocuments(language, JobParameters.Split(split)).Select(d => d.Text);
        var file = new FileInfo(Path.Combine(corpus.Directory, language + Corpus.DocumentFileExtension));
        // In memory a text takes about twice its UTF-8 bytes.
        if (file.Exists && 2 * file.Length > context.Cache.MaxBytes) return documents();
        return context.Cache.GetOrAdd($"{corpusKey}/{language}{Corpus.DocumentFileExtension}|{split}", () => documents().ToList(), texts => texts.Sum(t => 2L * t.Length + 24));
    }

    public override Task<PerplexityReport> AssembleAsync(FinishedJob<PerplexityJobParameters> job, CancellationToken cancellationToken) =>
        Task.FromResult(new PerplexityReport(job.Parameters.Model, job.Parameters.Split, Results(job.Parameters.Languages, job.Status.Totals)));

    public override void Save(PerplexityReport result, string directory) => result.Save(directory);

    public override string Summary(PerplexityReport result) => string.Create(CultureInfo.InvariantCulture,
        $"perplexity of {result.Languages.Count} languages on the {result.Split} split: mean {result.Languages.Select(l => l.Perplexity).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average():F2}");

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
