using System.Globalization;
using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Grains.Experts;

/// <summary>
/// Parameters of an expert-activation profile: artifact keys of a model folder (with experts.json) and a corpus, the rule
/// and the slicing, and the token stream of every language (<see cref="TokenizeJob"/>), which the plan is made from.
/// </summary>
public sealed record ProfileJobParameters(
    string Model,
    string Corpus,
    IReadOnlyList<string> Languages,
    string Rule,
    string Split = "all",
    long? MaxTokensPerLanguage = null,
    int ShardTokens = 8192,
    int SequenceLength = 256,
    int BatchSize = 8,
    bool CountBos = false,
    IReadOnlyList<LanguageTokens>? Streams = null,
    string Dtype = "float32")
{
    /// <summary>What the tokenize job must produce for this profile: the languages' streams of the split, cut at the cap.</summary>
    public TokenizeJobParameters TokenizeParameters() => new(Model, Corpus, Languages, Split, MaxTokensPerLanguage);
}

/// <summary>One shard: a token range of one language's token stream.</summary>
public sealed record ProfileShard(string Language, long Start, long End);

/// <summary>What a profile shard writes: its slice, its counts, and the corpus name and partition it counted with (for the run's manifest).</summary>
public sealed record ProfileShardResult(string Shard, string Language, long Start, long End, string CorpusName, PartitionIdentity Partition, long Tokens, long[][] Counts);

/// <summary>
/// Counts, per language, layer and expert, how many tokens activate each expert ("Unraveling Babel"). A language's
/// token stream is its documents in corpus order, each as [BOS] text, tokenised once by the <see cref="TokenizeJob"/> on a
/// worker and stored; the plan is made from the streams' token counts (nothing is tokenised on the client), and a shard
/// reads its token range of the stored stream, cut into windows of the sequence length. Counts are int64 totals, so any
/// split of the work gives the same profile; the result is the run folder (<see cref="ProfileRun"/>).
/// </summary>
public sealed class ProfileJob : JobKind<ProfileJobParameters, ProfileShard, ProfileRun>
{
    public const string KindName = "profile";

    public override string Name => KindName;

    protected override void Validate(ProfileJobParameters p)
    {
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The profile job parameters need a model and a corpus.");
        JobParameters.Languages(p.Languages, KindName);
        ActivationRule.Parse(p.Rule);
        if (p.ShardTokens < 1 || p.SequenceLength < 1 || p.BatchSize < 1) throw new UserInputException("--shard-tokens, the sequence length and the batch size must be positive.");
        if (p.MaxTokensPerLanguage is < 1) throw new UserInputException("--max-tokens-per-language must be positive.");
        JobParameters.Split(p.Split);
        ModelDtypes.ParseForJob(p.Dtype);
    }

    protected override void ValidatePlanningInputs(ProfileJobParameters p)
    {
        TokenizeJob.RequireStreams(p.Streams, p.Languages, KindName);
    }

    public static string ShardId(string language, long index) => string.Create(CultureInfo.InvariantCulture, $"{language}-{index:D5}");

    /// <summary>Token ranges of whole windows of each language's stream, from the streams' token counts: only the model's config and experts.json are read.</summary>
    protected override async Task<IReadOnlyList<Shard<ProfileShard>>> PlanAsync(ProfileJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var modelFolder = await artifacts.LocalFolderAsync(p.Model, cancellationToken);
        var partition = ExpertPartition.Load(modelFolder).CheckFits(Modeling.Checkpoints.ModelConfig.Load(modelFolder), Path.Combine(modelFolder, ExpertPartition.FileName));
        ActivationRule.Parse(p.Rule).CheckFits(partition);
        var plan = new List<Shard<ProfileShard>>();
        // Shards hold whole windows, so every window (and so every count) is the same whatever the shard size.
        var shardTokens = (long)Math.Ceiling(p.ShardTokens / (double)p.SequenceLength) * p.SequenceLength;
        foreach (var stream in p.Languages.Select(language => TokenizeJob.StreamOf(p.Streams!, language)))
        {
            var length = stream.Tokens;
            if (length == 0) throw new UserInputException($"Language '{stream.Language}' has no text in the {p.Split} split; remove it from --languages.");
            for (long start = 0, index = 0; start < length; start += shardTokens, index++)
            {
                var end = Math.Min(length, start + shardTokens);
                plan.Add(new(ShardId(stream.Language, index), new ProfileShard(stream.Language, start, end), end - start));
            }
        }
        return plan;
    }

    /// <summary>The index of the language's stored token stream, read and checked once per worker process and shared by every shard that reads the stream.</summary>
    private static TokenStream Stream(ShardContext context, LanguageTokens language, CancellationToken cancellationToken)
    {
        var stream = context.Cache.GetOrAdd(language.Stream,
            () => TokenStream.OpenAsync(context.Store, language.Stream, cancellationToken).GetAwaiter().GetResult()
                ?? throw new InvalidOperationException($"The token stream {language.Stream} of '{language.Language}' is missing from the artifact store; rerun the command to tokenize the corpus again."),
            opened => opened.IndexBytes);
        return stream.Tokens == language.Tokens
            ? stream
            : throw new InvalidDataException($"The token stream {language.Stream} of '{language.Language}' holds {stream.Tokens} tokens, not the {language.Tokens} the job was planned with.");
    }

    protected override ShardResult RunShard(ShardContext context, ProfileJobParameters p, Shard<ProfileShard> shard, CancellationToken cancellationToken)
    {
        var slice = shard.Slice;
        TorchRuntime.Initialize(context.Threads);
        var modelFolder = context.LocalFolder(p.Model, cancellationToken);
        var partition = ExpertPartition.Load(modelFolder);
        // The replica's FFN neurons are grouped by expert once (MoEfication's layout), so counting reduces over contiguous slices.
        var (model, loadedTokenizer) = context.Models.Get(p.Model, modelFolder, ModelDtypes.ParseForJob(p.Dtype),
            (ExpertLayout.ReplicaName(partition), replica => ExpertLayout.GroupByExpert(replica, partition.CheckFits(replica.Config, Path.Combine(modelFolder, ExpertPartition.FileName)))));
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; this job needs one.");
        var grouped = ExpertPartition.Contiguous(partition.Layers, partition.IntermediateSize, partition.Experts);
        // Only the corpus's name, from its manifest: the worker reads no document, so it never downloads the corpus.
        var corpusName = context.Cache.GetOrAdd($"{p.Corpus}/{CorpusManifest.FileName}", () => Corpus.ParseManifest(
            context.Store.GetBytesAsync($"{p.Corpus}/{CorpusManifest.FileName}", cancellationToken).GetAwaiter().GetResult()
                ?? throw new InvalidOperationException($"The corpus {p.Corpus} has no {CorpusManifest.FileName} in the artifact store."), $"{p.Corpus}/{CorpusManifest.FileName}"),
            _ => 4096).Name;
        var stream = TokenizeJob.StreamOf(p.Streams!, slice.Language);
        var tokens = Stream(context, stream, cancellationToken).ReadAsync(context.Store, slice.Start, slice.End, cancellationToken).GetAwaiter().GetResult();
        var counted = ActivationProfiler.Count(model, grouped, ActivationRule.Parse(p.Rule), tokens, tokenizer.BosId, p.SequenceLength, p.BatchSize, p.CountBos, cancellationToken);
        var totals = new List<KeyValuePair<string, long>> { new(TokensName(slice.Language), counted.Tokens) };
        for (var layer = 0; layer < counted.Counts.Length; layer++)
        {
            for (var expert = 0; expert < counted.Counts[layer].Length; expert++) totals.Add(new(CountName(slice.Language, layer, expert), counted.Counts[layer][expert]));
        }
        return ShardResult.Of(new ProfileShardResult(shard.Id, slice.Language, slice.Start, slice.End, corpusName, PartitionIdentity.Of(partition), counted.Tokens, counted.Counts), totals);
    }

    public static string TokensName(string language) => $"{language}.tokens";

    public static string CountName(string language, int layer, int expert) => string.Create(CultureInfo.InvariantCulture, $"{language}.counts.{layer:D3}.{expert:D4}");

    /// <summary>The profile from a finished job's totals.</summary>
    public static ActivationProfile Profile(string model, ProfileJobParameters p, int layers, int experts, IReadOnlyDictionary<string, long> totals)
    {
        var languages = new SortedDictionary<string, LanguageActivations>(StringComparer.Ordinal);
        foreach (var language in p.Languages)
        {
            var counts = Enumerable.Range(0, layers)
                .Select(layer => Enumerable.Range(0, experts).Select(expert => totals.GetValueOrDefault(CountName(language, layer, expert))).ToArray())
                .ToArray();
            languages[language] = new LanguageActivations(totals.GetValueOrDefault(TokensName(language)), counts);
        }
        return new ActivationProfile(model, layers, experts, ActivationRule.Parse(p.Rule).ToString(), languages);
    }

    /// <summary>The run: the profile from the totals, and its manifest from the parameters, the first shard's document, the job's origin and wall time.</summary>
    public override async Task<ProfileRun> AssembleAsync(FinishedJob<ProfileJobParameters> job, CancellationToken cancellationToken)
    {
        var p = job.Parameters;
        var first = (await job.ReadShardsAsync<ProfileShardResult>([ShardId(p.Languages[0], 0)], cancellationToken))[0];
        var profile = Profile(p.Model, p, first.Counts.Length, first.Partition.Experts, job.Status.Totals);
        var tokens = profile.Languages.Values.Sum(l => l.Tokens);
        var wall = job.WallSeconds;
        var manifest = new RunManifest
        {
            Job = job.JobId,
            Model = p.Model,
            ModelFolder = job.Origin.FolderOf(p.Model),
            Corpus = p.Corpus,
            CorpusName = first.CorpusName,
            CorpusFolder = job.Origin.FolderOf(p.Corpus),
            Partition = first.Partition,
            Rule = profile.Rule,
            Split = p.Split,
            CountBos = p.CountBos,
            ShardTokens = p.ShardTokens,
            SequenceLength = p.SequenceLength,
            Languages = p.Languages,
            Tokens = tokens,
            Shards = job.Status.Shards,
            Versions = RunVersions.Current(),
            WallSeconds = wall,
            TokensPerSecond = tokens / wall,
        };
        return new ProfileRun(profile, manifest);
    }

    public override void Save(ProfileRun result, string directory) => result.Save(directory);

    public override string Summary(ProfileRun result) => result.Summary();
}
