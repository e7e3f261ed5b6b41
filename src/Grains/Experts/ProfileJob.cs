using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Globalization;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Storage;
using Babel.Storage.Corpora;
using static TorchSharp.torch;

namespace Babel.Grains.Experts;

/// <summary>Parameters of an expert-activation profile: artifact keys of a model folder (with experts.json) and a corpus, the rule and the slicing.</summary>
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
    bool CountBos = false);

/// <summary>One shard: a token range of one language's token stream.</summary>
public sealed record ProfileShardParameters(string Language, long Start, long End);

/// <summary>
/// Counts, per language, layer and expert, how many tokens activate each expert ("Unraveling Babel"). A language's
/// token stream is its documents in corpus order, each as [BOS] text; shards are token ranges of it, cut into windows
/// of the sequence length. Counts are int64 totals, so any split of the work gives the same profile.
/// </summary>
public sealed class ProfileJob : IJobKind
{
    public const string KindName = "profile";
    private readonly ConcurrentDictionary<(string Model, string Corpus, string Language, string Split, long? Max), long[]> _streams = new();

    public string Name => KindName;

    public static string Serialize<T>(T value) => JobParameters.Serialize(value);

    public static ProfileJobParameters ParseParameters(string json)
    {
        var p = JobParameters.Deserialize<ProfileJobParameters>(json, KindName);
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The profile job parameters need a model and a corpus.");
        if (p.Languages is null || p.Languages.Count == 0) throw new UserInputException("The profile job names no language.");
        ActivationRule.Parse(p.Rule);
        if (p.ShardTokens < 1 || p.SequenceLength < 1 || p.BatchSize < 1) throw new UserInputException("--shard-tokens, the sequence length and the batch size must be positive.");
        if (p.MaxTokensPerLanguage is < 1) throw new UserInputException("--max-tokens-per-language must be positive.");
        JobParameters.Split(p.Split);
        return p;
    }

    public async Task<IReadOnlyList<ShardSpec>> PlanAsync(string parameters, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var modelFolder = await artifacts.LocalFolderAsync(p.Model, cancellationToken);
        var corpusFolder = await artifacts.LocalFolderAsync(p.Corpus, cancellationToken);
        var partition = ExpertPartition.Load(modelFolder).CheckFits(Modeling.Checkpoints.ModelConfig.Load(modelFolder), Path.Combine(modelFolder, ExpertPartition.FileName));
        ActivationRule.Parse(p.Rule).CheckFits(partition);
        using var tokenizer = HuggingFaceTokenizer.Load(modelFolder);
        var corpus = Corpus.Open(corpusFolder);
        var plan = new List<ShardSpec>();
        // Shards hold whole windows, so every window (and so every count) is the same whatever the shard size.
        var shardTokens = (long)Math.Ceiling(p.ShardTokens / (double)p.SequenceLength) * p.SequenceLength;
        foreach (var language in p.Languages)
        {
            var length = Stream(p, language, tokenizer, corpus).LongLength;
            if (length == 0) throw new UserInputException($"Language '{language}' has no text in the {p.Split} split; remove it from --languages.");
            for (long start = 0, index = 0; start < length; start += shardTokens, index++)
            {
                var end = Math.Min(length, start + shardTokens);
                plan.Add(new ShardSpec(string.Create(CultureInfo.InvariantCulture, $"{language}-{index:D5}"), Serialize(new ProfileShardParameters(language, start, end)), end - start));
            }
        }
        return plan;
    }

    /// <summary>The language's token stream, cached per worker: every shard of a language slices the same stream.</summary>
    private long[] Stream(ProfileJobParameters p, string language, ITokenizer tokenizer, Corpus corpus) =>
        _streams.GetOrAdd((p.Model, p.Corpus, language, p.Split, p.MaxTokensPerLanguage), _ =>
        {
            if (_streams.Count > 64) _streams.Clear();
            var tokens = new List<long>();
            foreach (var document in corpus.ReadDocuments(language, JobParameters.Split(p.Split)))
            {
                tokens.Add(tokenizer.BosId);
                tokens.AddRange(tokenizer.Encode(document.Text).Select(t => (long)t));
                if (p.MaxTokensPerLanguage is { } max && tokens.Count >= max) break;
            }
            return p.MaxTokensPerLanguage is { } limit && tokens.Count > limit ? [.. tokens.Take((int)limit)] : [.. tokens];
        });

    public ShardResult RunShard(ShardContext context, string parameters, ShardSpec shard, CancellationToken cancellationToken)
    {
        var p = ParseParameters(parameters);
        var slice = JobParameters.Deserialize<ProfileShardParameters>(shard.Parameters, KindName);
        TorchRuntime.Initialize(context.Threads);
        var modelFolder = context.LocalFolder(p.Model, cancellationToken);
        var (model, loadedTokenizer) = context.Models.Get(p.Model, modelFolder);
        var tokenizer = loadedTokenizer ?? throw new UserInputException($"Model {p.Model} has no tokenizer.json; this job needs one.");
        var partition = ExpertPartition.Load(modelFolder).CheckFits(model.Config, Path.Combine(modelFolder, ExpertPartition.FileName));
        var rule = ActivationRule.Parse(p.Rule);
        var stream = Stream(p, slice.Language, tokenizer, Corpus.Open(context.LocalFolder(p.Corpus, cancellationToken)));
        var tokens = stream[(int)slice.Start..(int)slice.End];
        using var counter = new ActivationCounter(partition, rule, CPU);
        var pad = model.Config.PadTokenId ?? 0;
        using (no_grad())
        {
            var windows = tokens.Chunk(p.SequenceLength).ToList();
            foreach (var batch in windows.Chunk(p.BatchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var width = batch.Max(w => w.Length);
                var ids = new long[batch.Length * width];
                var counted = new bool[batch.Length * width];
                Array.Fill(ids, pad);
                for (var row = 0; row < batch.Length; row++)
                {
                    // Right padding: causal attention keeps pads out of every real token's computation.
                    Array.Copy(batch[row], 0, ids, row * width, batch[row].Length);
                    for (var i = 0; i < batch[row].Length; i++) counted[row * width + i] = p.CountBos || batch[row][i] != tokenizer.BosId;
                }
                counter.SetTokenMask(tensor(counted, [batch.Length, width]));
                model.Forward(tensor(ids, [batch.Length, width]), hook: counter);
            }
        }
        var counts = counter.Counts();
        var totals = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
        totals[TokensName(slice.Language)] = counter.Tokens;
        for (var layer = 0; layer < counts.Length; layer++)
        {
            for (var expert = 0; expert < counts[layer].Length; expert++) totals[CountName(slice.Language, layer, expert)] = counts[layer][expert];
        }
        var result = totals.ToImmutable();
        var content = JobParameters.SerializeToUtf8Bytes(new { shard = shard.ShardId, slice.Language, slice.Start, slice.End, tokens = counter.Tokens, counts });
        return new ShardResult(content, result);
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
}
