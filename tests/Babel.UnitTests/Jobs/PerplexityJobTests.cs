using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>The perplexity job kind without a cluster: its shards against the single-process computation.</summary>
public class PerplexityJobTests
{
    [Fact]
    public async Task Shard_totals_in_any_order_give_the_single_process_perplexity()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var resolver = new JobTestInputs.LocalFolders(new() { ["models/m"] = model, ["corpora/c"] = corpus });
        using var replicas = new ModelReplicas();
        var cache = new WorkerCache();
        var context = new ShardContext("test", "cpu:0", 1, resolver, replicas, new Storage.Artifacts.LocalFolderArtifactStore(scratch.Combine("store")), cache);
        // The plan is made from the documents the tokenize job counts on a worker; the client opens no input.
        var p = new PerplexityJobParameters("models/m", "corpora/c", ["eng", "fra"], Split: "all", DocumentsPerShard: 3);
        var streams = await new TokenizeJob().RunHereAsync(p.TokenizeParameters(), new InProcessWorker(context.Store, new Dictionary<string, string> { ["models/m"] = model, ["corpora/c"] = corpus }), CancellationToken.None);
        Assert.Equal([7L, 5L], streams.Select(s => s.Documents));
        IJobKind kind = new PerplexityJob();
        var parameters = ((PerplexityJob)kind).Serialize(p with { Streams = streams });
        var plan = await kind.PlanAsync(parameters, new JobTestInputs.LocalFolders(new()), CancellationToken.None);
        Assert.Equal(["eng-0000", "eng-0001", "eng-0002", "fra-0000", "fra-0001"], plan.Select(s => s.ShardId));
        Assert.Equal([3, 3, 1, 3, 2], plan.Select(s => s.Items));

        Dictionary<string, long> Sum(IEnumerable<Babel.Contracts.ShardSpec> shards)
        {
            var totals = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var shard in shards)
            {
                foreach (var (name, value) in kind.RunShard(context, parameters, shard, CancellationToken.None).Totals) totals[name] = totals.GetValueOrDefault(name) + value;
            }
            return totals;
        }
        var forward = Sum(plan);
        var backward = Sum(plan.Reverse());
        Assert.Equal(forward, backward);
        // Ten shard runs read each language's documents once (the tokenize shards read no cached input).
        Assert.Equal(2, cache.Loads);

        using var network = CausalLanguageModel.Load(model);
        using var tokenizer = HuggingFaceTokenizer.Load(model);
        var opened = Corpus.Open(corpus);
        var results = PerplexityJob.Results(["eng", "fra"], forward);
        foreach (var result in results)
        {
            var single = Perplexity.Evaluate(network, tokenizer, result.Language, opened.ReadDocuments(result.Language).Select(d => d.Text));
            Assert.Equal(single.Tokens, result.Tokens);
            Assert.Equal(single.Documents, result.Documents);
            Assert.Equal(single.Bytes, result.Bytes);
            // Shards batch windows differently from one pass over all documents: equal up to float rounding.
            Assert.Equal(single.MeanNll, result.MeanNll, 5);
        }
        Assert.Single(replicas.Keys);
    }

    [Fact]
    public void A_bfloat16_job_loads_bfloat16_replicas_and_stays_within_a_percent_of_float32()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        System.Text.Json.Nodes.JsonObject Report(string dtype)
        {
            var folder = scratch.Combine(dtype);
            var run = CliRun.Run("perplexity", "--model", model, "--corpus", corpus, "--split", "all", "--dtype", dtype, "--store", scratch.Combine($"store-{dtype}"), "--out", folder);
            Assert.True(run.Code == 0, run.Error);
            return System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(folder, PerplexityReport.FileName)))!["languages"]!.AsObject();
        }
        var exact = Report("float32");
        var half = Report("bfloat16");
        Assert.Equal(["eng", "fra"], exact.Select(l => l.Key).Order(StringComparer.Ordinal));
        foreach (var (language, a) in exact)
        {
            var b = half[language]!;
            Assert.Equal((long)a!["tokens"]!, (long)b["tokens"]!);
            // bfloat16 keeps 8 bits of mantissa: the mean NLL moves, but by well under a percent on this model.
            double x = (double)a["mean_nll"]!, y = (double)b["mean_nll"]!;
            Assert.NotEqual(x, y);
            Assert.InRange(Math.Abs(y - x) / x, 0, 0.01);
        }
    }

    [Theory]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[]}", "names no language")]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[\"eng\"],\"documentsPerShard\":0}", "--documents-per-shard must be at least 1")]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[\"eng\"],\"split\":\"dev\"}", "Unknown split")]
    [InlineData("not json", "not valid JSON")]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[\"eng\"],\"dtype\":\"auto\"}", "--dtype auto is not accepted by a job")]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[\"eng\"],\"dtype\":\"int8\"}", "--dtype 'int8' is not known")]
    [InlineData("{\"model\":\"m\",\"corpus\":\"c\",\"languages\":[\"eng\"]}", "need the token stream of each of their languages")]
    public void Invalid_parameters_are_one_clear_sentence(string json, string expected)
    {
        var error = Assert.Throws<UserInputException>(() => new PerplexityJob().Parse(json));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
