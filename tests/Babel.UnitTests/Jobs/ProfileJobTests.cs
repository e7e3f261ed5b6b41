using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Jobs;

/// <summary>
/// The profile job kind without a cluster, as the engine runs it: inputs uploaded to a store, every language tokenised
/// once by the tokenize job's shards on a "worker", the profile planned on a "client" that opens neither the corpus nor the
/// tokenizer, and its shards in any order and of any size against one counter over each whole language.
/// </summary>
public class ProfileJobTests
{
    private sealed record Uploaded(LocalFolderArtifactStore Store, string Model, string Corpus, IArtifactResolver Worker, IArtifactResolver Client);

    /// <summary>The client's view: the model's config.json and experts.json only (no tokenizer); opening anything else fails the test.</summary>
    private sealed class ClientFolders(string modelKey, string modelFolder) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) => key == modelKey
            ? Task.FromResult(modelFolder)
            : throw new InvalidOperationException($"The plan opened {key} on the client.");
    }

    private static async Task<Uploaded> UploadAsync(ScratchFolder scratch, string model, string corpus)
    {
        var store = new LocalFolderArtifactStore(scratch.Combine("artifacts"));
        var modelKey = await store.UploadFolderAsync(model, "models");
        var corpusKey = await store.UploadFolderAsync(corpus, "corpora");
        var client = Directory.CreateDirectory(scratch.Combine("client-model")).FullName;
        foreach (var file in new[] { ModelConfig.ConfigFileName, ExpertPartition.FileName }) File.Copy(Path.Combine(model, file), Path.Combine(client, file));
        return new(store, modelKey, corpusKey, new JobTestInputs.StoreFolders(store, scratch.Combine("worker-cache")), new ClientFolders(modelKey, client));
    }

    private static ShardContext Worker(Uploaded inputs, ModelReplicas replicas, WorkerCache cache) => new("test", "cpu:0", 1, inputs.Worker, replicas, inputs.Store, cache);

    /// <summary>The tokenize job of <paramref name="p"/> (its plan reads the corpus's manifest), its shards run on the worker; the parameters with its streams.</summary>
    private static async Task<ProfileJobParameters> TokenizeAsync(Uploaded inputs, ProfileJobParameters p, ShardContext worker)
    {
        IJobKind kind = new TokenizeJob();
        var json = new TokenizeJob().Serialize(p.TokenizeParameters());
        var plan = await kind.PlanAsync(json, inputs.Worker, CancellationToken.None);
        return p with { Streams = [.. plan.Select(shard => JobParameters.Deserialize<LanguageTokens>(kind.RunShard(worker, json, shard, CancellationToken.None).Content))] };
    }

    private static async Task<ActivationProfile> RunAsync(Uploaded inputs, string model, int shardTokens, bool reverse, WorkerCache cache)
    {
        using var replicas = new ModelReplicas();
        var worker = Worker(inputs, replicas, cache);
        var parameters = await TokenizeAsync(inputs, new ProfileJobParameters(inputs.Model, inputs.Corpus, ["eng", "fra"], "topk:2", ShardTokens: shardTokens, SequenceLength: 16, BatchSize: 1), worker);
        IJobKind kind = new ProfileJob();
        var json = new ProfileJob().Serialize(parameters);
        IEnumerable<ShardSpec> plan = await kind.PlanAsync(json, inputs.Client, CancellationToken.None);
        if (reverse) plan = plan.Reverse();
        var totals = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var shard in plan)
        {
            foreach (var (name, value) in kind.RunShard(worker, json, shard, CancellationToken.None).Totals) totals[name] = totals.GetValueOrDefault(name) + value;
        }
        var partition = ExpertPartition.Load(model);
        return ProfileJob.Profile("m", parameters, partition.Layers, partition.Experts, totals);
    }

    [Fact]
    public async Task Any_shard_size_and_order_gives_the_byte_identical_profile_of_one_pass_over_each_language()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);

        var inputs = await UploadAsync(scratch, model, corpus);
        var cache = new WorkerCache();

        var one = await RunAsync(inputs, model, shardTokens: 16, reverse: false, cache);
        var streams = Directory.GetFiles(Path.Combine(inputs.Store.Root, "tokens"));
        Assert.Equal(2, streams.Length);
        var written = streams.Select(File.GetLastWriteTimeUtc).ToList();
        var many = await RunAsync(inputs, model, shardTokens: 40, reverse: true, cache);
        Assert.Equal(one.ToJson(), many.ToJson());
        // The second job's tokenize shards found both streams intact and wrote nothing; every shard of a language read its
        // stream's index once, and the corpus manifest once (two stream indexes + one manifest).
        Assert.Equal(written, streams.Select(File.GetLastWriteTimeUtc));
        Assert.Equal(3, cache.Loads);

        // Independent: one counter over each language's whole stream, windows of 16 fed one by one, BOS not counted.
        using var loaded = CausalLanguageModel.Load(model);
        using var tokenizer = HuggingFaceTokenizer.Load(model);
        var partition = ExpertPartition.Load(model);
        var opened = Corpus.Open(corpus);
        foreach (var language in new[] { "eng", "fra" })
        {
            long[] stream = [.. opened.ReadDocuments(language).SelectMany(d => new long[] { tokenizer.BosId }.Concat(tokenizer.Encode(d.Text).Select(t => (long)t)))];
            using var counter = new ActivationCounter(partition, ActivationRule.Parse("topk:2"), CPU);
            using (no_grad())
            {
                foreach (var window in stream.Chunk(16))
                {
                    counter.SetTokenMask(tensor(window.Select(t => t != tokenizer.BosId).ToArray(), [1, window.Length]));
                    loaded.Forward(tensor(window, [1, window.Length]), hook: counter).Dispose();
                }
            }
            Assert.Equal(stream.LongLength - opened.ReadDocuments(language).Count(), one.Languages[language].Tokens);
            Assert.Equal(counter.Tokens, one.Languages[language].Tokens);
            Assert.Equal(counter.Counts(), one.Languages[language].Counts);
            Assert.All(one.Languages[language].Counts, layer => Assert.Equal(2 * counter.Tokens, layer.Sum()));
        }
    }

    [Fact]
    public async Task The_plan_opens_neither_the_corpus_nor_the_tokenizer_on_the_client()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        var inputs = await UploadAsync(scratch, model, corpus);
        using var replicas = new ModelReplicas();
        var p = await TokenizeAsync(inputs, new ProfileJobParameters(inputs.Model, inputs.Corpus, ["eng", "fra"], "topk:2", ShardTokens: 20, SequenceLength: 16), Worker(inputs, replicas, new WorkerCache()));

        // The streams hold what tokenising each language's documents gives, each as [BOS] text.
        using var tokenizer = HuggingFaceTokenizer.Load(model);
        var opened = Corpus.Open(corpus);
        foreach (var stream in p.Streams!)
        {
            Assert.Equal(opened.ReadDocuments(stream.Language).Sum(d => 1L + tokenizer.Encode(d.Text).Length), stream.Tokens);
            Assert.Equal(opened.ReadDocuments(stream.Language).Count(), stream.Documents);
        }

        var plan = await ((IJobKind)new ProfileJob()).PlanAsync(new ProfileJob().Serialize(p), inputs.Client, CancellationToken.None);
        // Whole windows of 16: shards of 32 tokens, the last of a language shorter.
        foreach (var stream in p.Streams!)
        {
            var shards = plan.Where(s => s.ShardId.StartsWith(stream.Language, StringComparison.Ordinal)).ToList();
            Assert.Equal(stream.Tokens, shards.Sum(s => s.Items));
            Assert.Equal((stream.Tokens + 31) / 32, shards.Count);
            Assert.All(shards.SkipLast(1), s => Assert.Equal(32, s.Items));
        }

        // Without the tokenize job's streams there is no plan: the parameters say how to get them.
        var error = Assert.Throws<UserInputException>(() => new ProfileJob().Parse(new ProfileJob().Serialize(p with { Streams = null })));
        Assert.Contains("token stream", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_stream_is_made_once_per_tokenizer_and_corpus_and_made_again_when_damaged()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        var inputs = await UploadAsync(scratch, model, corpus);
        using var replicas = new ModelReplicas();
        var worker = Worker(inputs, replicas, new WorkerCache());
        var p = await TokenizeAsync(inputs, new ProfileJobParameters(inputs.Model, inputs.Corpus, ["eng"], "topk:2", SequenceLength: 16), worker);

        // Another model with the same tokenizer files (an instruction-tuned copy, say) reads the same stream.
        var copy = Directory.CreateDirectory(scratch.Combine("tuned")).FullName;
        foreach (var file in Directory.GetFiles(model)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        await File.WriteAllTextAsync(Path.Combine(copy, "README.md"), "tuned");
        var tunedKey = await inputs.Store.UploadFolderAsync(copy, "models");
        Assert.NotEqual(inputs.Model, tunedKey);
        var tuned = await TokenizeAsync(inputs, p with { Model = tunedKey }, worker);
        Assert.Equal(p.Streams, tuned.Streams);
        // A cap is another stream.
        var capped = await TokenizeAsync(inputs, p with { MaxTokensPerLanguage = 10 }, worker);
        Assert.NotEqual(p.Streams![0].Stream, capped.Streams![0].Stream);
        Assert.Equal(10, capped.Streams[0].Tokens);

        // A stream damaged in the store: a profile shard fails with a clear error, and the next tokenize job writes it again.
        var path = Path.Combine(inputs.Store.Root, p.Streams[0].Stream);
        var bytes = await File.ReadAllBytesAsync(path);
        bytes[TokenStream.HeaderBytes + 1] ^= 0x10;
        await File.WriteAllBytesAsync(path, bytes);
        IJobKind profile = new ProfileJob();
        var json = new ProfileJob().Serialize(p);
        var first = (await profile.PlanAsync(json, inputs.Client, CancellationToken.None))[0];
        var error = Assert.Throws<InvalidDataException>(() => profile.RunShard(Worker(inputs, replicas, new WorkerCache()), json, first, CancellationToken.None));
        Assert.Equal($"The token stream '{p.Streams[0].Stream}' is damaged (block 0 does not match its checksum); tokenize the corpus again.", error.Message);
        var again = await TokenizeAsync(inputs, p, worker);
        Assert.Equal(p.Streams, again.Streams);
        Assert.Equal(TokenStream.FileLength(p.Streams[0].Tokens, TokenStream.DefaultBlockTokens), new FileInfo(path).Length);
        profile.RunShard(Worker(inputs, replicas, new WorkerCache()), json, first, CancellationToken.None);
    }

    [Fact]
    public async Task A_language_without_text_and_a_bad_rule_are_one_clear_sentence()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        var inputs = await UploadAsync(scratch, model, corpus);
        using var replicas = new ModelReplicas();
        var worker = Worker(inputs, replicas, new WorkerCache());
        var kind = new ProfileJob();
        var empty = kind.Serialize(await TokenizeAsync(inputs, new ProfileJobParameters(inputs.Model, inputs.Corpus, ["eng"], "topk:2", Split: "heldout"), worker));
        var error = await Assert.ThrowsAsync<UserInputException>(() => ((IJobKind)kind).PlanAsync(empty, inputs.Client, CancellationToken.None));
        Assert.Contains("no text", error.Message, StringComparison.Ordinal);
        var tooMany = kind.Serialize(await TokenizeAsync(inputs, new ProfileJobParameters(inputs.Model, inputs.Corpus, ["eng"], "topk:9"), worker));
        await Assert.ThrowsAsync<UserInputException>(() => ((IJobKind)kind).PlanAsync(tooMany, inputs.Client, CancellationToken.None));
        Assert.Throws<UserInputException>(() => kind.Parse(kind.Serialize(new ProfileJobParameters("m", "c", ["eng"], "top:2"))));
    }
}
