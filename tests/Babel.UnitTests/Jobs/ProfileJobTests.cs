using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Jobs;

/// <summary>The profile job kind without a cluster: shards in any order and of any size against one counter over each whole language.</summary>
public class ProfileJobTests
{
    private static async Task<ActivationProfile> RunAsync(string model, string corpus, int shardTokens, bool reverse)
    {
        var resolver = new JobTestInputs.LocalFolders(new() { ["models/m"] = model, ["corpora/c"] = corpus });
        var parameters = new ProfileJobParameters("models/m", "corpora/c", ["eng", "fra"], "topk:2", ShardTokens: shardTokens, SequenceLength: 16, BatchSize: 1);
        IJobKind kind = new ProfileJob();
        var json = new ProfileJob().Serialize(parameters);
        IEnumerable<ShardSpec> plan = await kind.PlanAsync(json, resolver, CancellationToken.None);
        if (reverse) plan = plan.Reverse();
        using var replicas = new ModelReplicas();
        var context = new ShardContext("test", "cpu:0", 1, resolver, replicas, new Storage.Artifacts.LocalFolderArtifactStore(Path.Combine(Path.GetTempPath(), "babel-test-artifacts")));
        var totals = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var shard in plan)
        {
            foreach (var (name, value) in kind.RunShard(context, json, shard, CancellationToken.None).Totals) totals[name] = totals.GetValueOrDefault(name) + value;
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

        var one = await RunAsync(model, corpus, shardTokens: 16, reverse: false);
        var many = await RunAsync(model, corpus, shardTokens: 40, reverse: true);
        Assert.Equal(one.ToJson(), many.ToJson());

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
    public async Task A_language_without_text_and_a_bad_rule_are_one_clear_sentence()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        var resolver = new JobTestInputs.LocalFolders(new() { ["models/m"] = model, ["corpora/c"] = corpus });
        var kind = new ProfileJob();
        var empty = kind.Serialize(new ProfileJobParameters("models/m", "corpora/c", ["eng"], "topk:2", Split: "heldout"));
        var error = await Assert.ThrowsAsync<UserInputException>(() => ((IJobKind)kind).PlanAsync(empty, resolver, CancellationToken.None));
        Assert.Contains("no text", error.Message, StringComparison.Ordinal);
        var tooMany = kind.Serialize(new ProfileJobParameters("models/m", "corpora/c", ["eng"], "topk:9"));
        await Assert.ThrowsAsync<UserInputException>(() => ((IJobKind)kind).PlanAsync(tooMany, resolver, CancellationToken.None));
        Assert.Throws<UserInputException>(() => kind.Parse(kind.Serialize(new ProfileJobParameters("m", "c", ["eng"], "top:2"))));
    }
}
