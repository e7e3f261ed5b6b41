using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;

namespace Babel.Grains.LanguageModels;

/// <summary>
/// Parameters of a tokenize job: the artifact key of a model folder (only its tokenizer files are read), a corpus, the
/// languages and split, and at most how many tokens of each language to keep.
/// </summary>
public sealed record TokenizeJobParameters(string Model, string Corpus, IReadOnlyList<string> Languages, string Split = "all", long? MaxTokensPerLanguage = null);

/// <summary>One language's stored token stream: its artifact key and its token and document counts (what a plan is made from).</summary>
public sealed record LanguageTokens(string Language, string Stream, long Tokens, long Documents);

/// <summary>The token streams of a tokenize job's languages, in its order.</summary>
public sealed record TokenizedCorpus(IReadOnlyList<LanguageTokens> Languages)
{
    public const string FileName = "tokens.json";

    /// <summary>Streams that could not be opened when the job's result was read (missing or damaged in the store).</summary>
    public IReadOnlyList<string> Unreadable { get; init; } = [];
}

/// <summary>
/// Tokenises each language of a corpus once, on a worker, into a <see cref="TokenStream"/> in the artifact store: the
/// language's documents of the split in corpus order, each as [BOS] and its tokens, cut at the cap. The stream's key is
/// derived from the tokenizer files, the corpus, the language, the split and the cap, so any later job of the same inputs
/// (another model with the same tokenizer, a rerun) reuses an intact stream instead of tokenising again. Plans that need
/// token counts (<c>babel profile</c>) are made from this job's result, never by tokenising on the client.
/// </summary>
public sealed class TokenizeJob : JobKind<TokenizeJobParameters, string, TokenizedCorpus>
{
    public const string KindName = "tokenize";
    public const string StreamsPrefix = "tokens/";
    /// <summary>The files whose bytes decide how a text is tokenised (and which id is BOS).</summary>
    public static readonly IReadOnlyList<string> TokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"];
    /// <summary>How often a workflow resubmits the job under a new id when streams it reported are gone from the store.</summary>
    private const int MaxRepairs = 3;

    public override string Name => KindName;

    protected override void Validate(TokenizeJobParameters p)
    {
        if (string.IsNullOrEmpty(p.Model) || string.IsNullOrEmpty(p.Corpus)) throw new UserInputException("The tokenize job parameters need a model and a corpus.");
        JobParameters.Languages(p.Languages, KindName);
        JobParameters.Split(p.Split);
        if (p.MaxTokensPerLanguage is < 1) throw new UserInputException("--max-tokens-per-language must be positive.");
    }

    /// <summary>One shard per language; the plan reads only the corpus's manifest (corpus.json), to check that it holds every language.</summary>
    protected override async Task<IReadOnlyList<Shard<string>>> PlanAsync(TokenizeJobParameters p, IArtifactResolver artifacts, CancellationToken cancellationToken)
    {
        var corpus = Corpus.Open(await artifacts.LocalFolderAsync(p.Corpus, cancellationToken));
        foreach (var language in p.Languages)
        {
            if (corpus.Manifest.FindLanguage(language) is null)
            {
                throw new UserInputException($"Language '{language}' is not in the corpus; it has: {string.Join(", ", corpus.Manifest.Languages.Select(l => l.Code))}.");
            }
        }
        return [.. p.Languages.Select(language => new Shard<string>(language, language, 1))];
    }

    /// <summary>Lowercase hex SHA-256 over the tokenizer files present in <paramref name="modelFolder"/> (name, length, bytes).</summary>
    public static string TokenizerIdentity(string modelFolder)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var name in TokenizerFiles)
        {
            var path = Path.Combine(modelFolder, name);
            if (!File.Exists(path)) continue;
            var bytes = File.ReadAllBytes(path);
            hash.AppendData(Encoding.UTF8.GetBytes($"{name}\n{bytes.LongLength}\n"));
            hash.AppendData(bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The artifact key of a language's stream: a hash of what decides its content.</summary>
    public static string StreamKey(string tokenizerIdentity, string corpus, string language, string split, long? maxTokens)
    {
        var identity = string.Create(CultureInfo.InvariantCulture, $"v{TokenStream.Version}\n{tokenizerIdentity}\n{corpus}\n{language}\n{split}\n{maxTokens}");
        return $"{StreamsPrefix}{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))}{TokenStream.Extension}";
    }

    protected override ShardResult RunShard(ShardContext context, TokenizeJobParameters p, Shard<string> shard, CancellationToken cancellationToken)
    {
        var language = shard.Slice;
        var modelFolder = context.LocalFolder(p.Model, cancellationToken);
        var key = StreamKey(TokenizerIdentity(modelFolder), p.Corpus, language, p.Split, p.MaxTokensPerLanguage);
        var (tokens, documents) = Stored(context.Store, key, cancellationToken)
            ?? Write(context.Store, key, modelFolder, Corpus.Open(context.LocalFolder(p.Corpus, cancellationToken)), language, JobParameters.Split(p.Split), p.MaxTokensPerLanguage, cancellationToken);
        return ShardResult.Of(new LanguageTokens(language, key, tokens, documents), [new(TokensName(language), tokens), new(DocumentsName(language), documents)]);
    }

    public static string TokensName(string language) => $"{language}.tokens";

    public static string DocumentsName(string language) => $"{language}.documents";

    /// <summary>The counts of the intact stream under <paramref name="key"/>, or null when there is none or it is damaged (it is then written again).</summary>
    private static (long Tokens, long Documents)? Stored(IArtifactStore store, string key, CancellationToken cancellationToken)
    {
        using var content = store.OpenReadAsync(key, cancellationToken).GetAwaiter().GetResult();
        if (content is null) return null;
        try
        {
            return TokenStream.VerifyAsync(content, key, cancellationToken).GetAwaiter().GetResult();
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>
    /// Tokenises <paramref name="language"/>'s documents of <paramref name="split"/> into a temporary file (so a language
    /// of gigabytes never sits in memory) and stores it under <paramref name="key"/>.
    /// </summary>
    public static (long Tokens, long Documents) Write(IArtifactStore store, string key, string modelFolder, Corpus corpus, string language, CorpusSplit split,
        long? maxTokens, CancellationToken cancellationToken)
    {
        using var tokenizer = HuggingFaceTokenizer.Load(modelFolder);
        var path = Path.Combine(Path.GetTempPath(), $"babel-tokens-{Guid.NewGuid():N}{TokenStream.Extension}");
        try
        {
            using var file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
            var writer = new TokenStream.Writer(file);
            var limit = maxTokens ?? long.MaxValue;
            foreach (var document in corpus.ReadDocuments(language, split))
            {
                if (writer.Tokens >= limit) break;
                cancellationToken.ThrowIfCancellationRequested();
                writer.BeginDocument();
                writer.Add(tokenizer.BosId);
                foreach (var token in tokenizer.Encode(document.Text))
                {
                    if (writer.Tokens >= limit) break;
                    writer.Add(token);
                }
            }
            writer.Complete();
            file.Seek(0, SeekOrigin.Begin);
            store.PutAsync(key, file, cancellationToken).GetAwaiter().GetResult();
            return (writer.Tokens, writer.Documents);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>The streams from the shard documents; a stream that cannot be opened now (gone or damaged in the store) is listed as unreadable.</summary>
    public override async Task<TokenizedCorpus> AssembleAsync(FinishedJob<TokenizeJobParameters> job, CancellationToken cancellationToken)
    {
        var languages = await job.ReadShardsAsync<LanguageTokens>(job.Parameters.Languages, cancellationToken);
        var unreadable = new List<string>();
        foreach (var language in languages)
        {
            var readable = false;
            try
            {
                readable = await TokenStream.OpenAsync(job.Store, language.Stream, cancellationToken) is { } opened && opened.Tokens == language.Tokens;
            }
            catch (InvalidDataException)
            {
            }
            // Not deleted here (a client may only read the store): the next job's shard finds it missing or damaged and writes it again.
            if (!readable) unreadable.Add(language.Stream);
        }
        return new TokenizedCorpus(languages) { Unreadable = unreadable };
    }

    public override void Save(TokenizedCorpus result, string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllBytes(Path.Combine(directory, TokenizedCorpus.FileName), JobParameters.SerializeToUtf8Bytes(result.Languages));
    }

    public override string Summary(TokenizedCorpus result) => string.Create(CultureInfo.InvariantCulture,
        $"tokenized {result.Languages.Count} languages: {result.Languages.Sum(l => l.Tokens)} tokens in {result.Languages.Sum(l => l.Documents)} documents");

    /// <summary>
    /// The token streams of <paramref name="p"/>'s languages, for a plan: the tokenize job on the engine's workers, waited
    /// for; or, when <paramref name="here"/> is given (an embedded process whose engine has no worker, e.g. a command with
    /// <c>--no-wait</c>), its shards run in this process, which is then the embedded silo, and write to the same store.
    /// Streams that went missing from the store since a finished job reported them are made again under a new job id.
    /// </summary>
    public async Task<IReadOnlyList<LanguageTokens>> StreamsAsync(JobClient jobs, TokenizeJobParameters p, InProcessWorker? here, IProgress<Contracts.JobStatus>? progress,
        CancellationToken cancellationToken)
    {
        if (here is not null) return await RunHereAsync(p, here, cancellationToken);
        var id = JobClient.DefaultJobId(Name, Serialize(Parse(Serialize(p))));
        for (var repair = 0; ; repair++)
        {
            var result = await jobs.RunAsync(this, p, new JobOptions(repair == 0 ? id : string.Create(CultureInfo.InvariantCulture, $"{id}.{repair}")), progress, cancellationToken);
            if (result.Unreadable.Count == 0) return result.Languages;
            if (repair == MaxRepairs)
            {
                throw new InvalidOperationException($"The token streams {string.Join(", ", result.Unreadable)} went missing or were damaged in the artifact store {MaxRepairs + 1} times in a row; check the store.");
            }
        }
    }

    /// <summary>
    /// <see cref="StreamsAsync(JobClient, TokenizeJobParameters, InProcessWorker?, IProgress{Contracts.JobStatus}?, CancellationToken)"/>
    /// of a workflow that uploaded <paramref name="modelFolder"/> and <paramref name="corpusFolder"/> as the parameters' model
    /// and corpus; <paramref name="here"/> is the embedded store when this process runs the shards itself.
    /// </summary>
    public Task<IReadOnlyList<LanguageTokens>> StreamsAsync(JobClient jobs, TokenizeJobParameters p, string modelFolder, string corpusFolder, IArtifactStore? here,
        IProgress<Contracts.JobStatus>? progress, CancellationToken cancellationToken) =>
        StreamsAsync(jobs, p, here is null
            ? null
            : new InProcessWorker(here, new Dictionary<string, string>(StringComparer.Ordinal) { [p.Model] = modelFolder, [p.Corpus] = corpusFolder }), progress, cancellationToken);

    /// <summary>
    /// Checks that <paramref name="streams"/> holds one token stream of each of <paramref name="languages"/> and nothing
    /// else: what a job planned from the tokenize job's result needs; one sentence naming <paramref name="kind"/> otherwise.
    /// </summary>
    public static void RequireStreams(IReadOnlyList<LanguageTokens>? streams, IReadOnlyCollection<string> languages, string kind)
    {
        var wanted = languages.ToHashSet(StringComparer.Ordinal);
        if (streams is null || streams.Count != wanted.Count || streams.Select(s => s?.Language).Distinct(StringComparer.Ordinal).Count() != wanted.Count
            || !streams.All(s => s is not null && wanted.Contains(s.Language) && s.Tokens >= 0 && s.Documents >= 0 && (s.Stream ?? "").StartsWith(StreamsPrefix, StringComparison.Ordinal)))
        {
            throw new UserInputException($"The {kind} job parameters need the token stream of each of their languages; the tokenize job makes them (the command runs it before the {kind} job).");
        }
    }

    /// <summary>The stream of <paramref name="language"/> among checked <paramref name="streams"/>.</summary>
    public static LanguageTokens StreamOf(IReadOnlyList<LanguageTokens> streams, string language) => streams.First(s => s.Language == language);

    /// <summary>Runs every shard of the job in this process (see <see cref="StreamsAsync(JobClient, TokenizeJobParameters, InProcessWorker?, IProgress{Contracts.JobStatus}?, CancellationToken)"/>).</summary>
    public async Task<IReadOnlyList<LanguageTokens>> RunHereAsync(TokenizeJobParameters p, InProcessWorker here, CancellationToken cancellationToken)
    {
        IJobKind kind = this;
        var json = Serialize(Parse(Serialize(p)));
        var folders = new LocalFolders(here.Folders);
        var plan = await kind.PlanAsync(json, folders, cancellationToken);
        return await Task.Run(() =>
        {
            using var models = new ModelReplicas();
            var context = new ShardContext("this-process", "cpu", 1, folders, models, here.Store);
            IReadOnlyList<LanguageTokens> streams = [.. plan.Select(shard => JobParameters.Deserialize<LanguageTokens>(kind.RunShard(context, json, shard, cancellationToken).Content))];
            return streams;
        }, cancellationToken);
    }

    private sealed class LocalFolders(IReadOnlyDictionary<string, string> folders) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) => folders.TryGetValue(key, out var folder)
            ? Task.FromResult(folder)
            : throw new InvalidOperationException($"Artifact {key} has no local folder in this process.");
    }
}

/// <summary>
/// An embedded process that runs a planning job's shards itself because its engine has no worker: the store it writes
/// to (the embedded store) and the local folder of each artifact key the job reads.
/// </summary>
public sealed record InProcessWorker(IArtifactStore Store, IReadOnlyDictionary<string, string> Folders);
