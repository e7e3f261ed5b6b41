using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Experts;

/// <summary><c>babel prune</c> and <c>babel eval-pruning</c> end to end on the embedded engine, on a tiny model.</summary>
public class PruneCommandTests
{
    private static (string Model, string Corpus, string Run, string Store) Profiled(ScratchFolder scratch)
    {
        var (model, corpus) = JobTestInputs.Write(scratch);
        using (var network = CausalLanguageModel.Load(model)) MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        var store = scratch.Combine("store");
        var run = scratch.Combine("run");
        var (code, _, error) = Run("profile", "--model", model, "--corpus", corpus, "--rule", "topk:2", "--sequence-length", "16", "--out", run, "--store", store);
        Assert.True(code == 0, error);
        return (model, corpus, run, store);
    }

    private static double PerplexityOf(string model, string corpus, string language)
    {
        using var network = CausalLanguageModel.Load(model);
        using var tokenizer = HuggingFaceTokenizer.Load(model);
        return Perplexity.Evaluate(network, tokenizer, language, Corpus.Open(corpus).ReadDocuments(language, CorpusSplit.All).Select(d => d.Text)).Perplexity;
    }

    [Fact]
    public void Eval_pruning_scores_every_strategy_and_agrees_with_the_exported_models()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, run, store) = Profiled(scratch);
        var curvesFolder = scratch.Combine("curves");
        var (code, output, error) = Run("eval-pruning", "--model", model, "--run", run, "--rates", "0.5,0.25", "--seeds", "2", "--split", "all",
            "--out", curvesFolder, "--store", store);
        Assert.True(code == 0, error);
        Assert.Contains("includes the all documents", error, StringComparison.Ordinal);
        Assert.Contains("Frequency-guided pruning gives lower perplexity than random pruning in", output, StringComparison.Ordinal);
        var curves = PruningCurves.Load(curvesFolder);
        Assert.Equal([0.25, 0.5], curves.Rates);
        Assert.Equal(["eng", "fra"], curves.Languages.Select(l => l.Language));
        foreach (var file in new[] { PruningCurves.TableFileName, PruningCurves.SummaryImage, PruningCurves.ImageOf("eng"), PruningCurves.ImageOf("fra") })
        {
            Assert.True(File.Exists(Path.Combine(curvesFolder, file)), file);
        }

        foreach (var language in new[] { "eng", "fra" })
        {
            var curve = curves.Languages.Single(l => l.Language == language);
            // The job's unpruned perplexity is the plain evaluation of the model on the same documents.
            Assert.Equal(PerplexityOf(model, corpus, language), curve.Unpruned, 1e-3 * curve.Unpruned);
            var random = curve.At(ExpertPruning.Random, 0.5)!;
            Assert.Equal(2, random.Seeds.Count);
            Assert.Equal(random.Seeds.Average(), random.Perplexity, 1e-9);
            // A second path: the physically pruned checkpoint, scored directly, gives the masked job's perplexity.
            var exported = scratch.Combine($"pruned-{language}");
            var (pruneCode, _, pruneError) = Run("prune", "--model", model, "--run", run, "--language", language, "--rate", "0.5", "--strategy", "frequency", "--export", "--out", exported);
            Assert.True(pruneCode == 0, pruneError);
            Assert.Equal([24, 24], ModelConfig.Load(exported).IntermediateSizes);
            var frequency = curve.At(ExpertPruning.Frequency, 0.5)!.Perplexity;
            Assert.Equal(PerplexityOf(exported, corpus, language), frequency, 1e-3 * frequency);
            Assert.NotEqual(curve.Unpruned, frequency, 1e-6);
        }
    }

    [Fact]
    public void Prune_writes_the_plan_of_the_least_active_experts()
    {
        using var scratch = new ScratchFolder();
        var (model, _, run, _) = Profiled(scratch);
        var (code, output, error) = Run("prune", "--model", model, "--run", run, "--language", "eng", "--rate", "0.25", "--out", scratch.Combine("plan"));
        Assert.True(code == 0, error);
        Assert.Contains("pruned 2 of 8 experts", output, StringComparison.Ordinal);
        var plan = JsonNode.Parse(File.ReadAllText(scratch.Combine("plan/pruning.json")))!;
        var frequencies = ActivationProfile.Load(run).Languages["eng"].Frequencies();
        for (var layer = 0; layer < 2; layer++)
        {
            var pruned = plan["pruned"]![layer]!.AsArray().Select(e => e!.GetValue<int>()).Single();
            Assert.Equal(frequencies[layer].Min(), frequencies[layer][pruned]);
        }
        Assert.False(File.Exists(scratch.Combine("plan/config.json")));
    }

    [Theory]
    [InlineData("--rate", "1.5", "outside (0, 1)")]
    [InlineData("--language", "deu", "'deu' is not in the profile")]
    [InlineData("--strategy", "magnitude", "magnitude")]
    public void Bad_pruning_input_is_one_sentence_and_writes_nothing(string option, string value, string expected)
    {
        using var scratch = new ScratchFolder();
        var (model, _, run, _) = Profiled(scratch);
        var arguments = new Dictionary<string, string> { ["--language"] = "eng", ["--rate"] = "0.5", ["--strategy"] = "frequency" };
        arguments[option] = value;
        var (code, _, error) = Run(["prune", "--model", model, "--run", run, "--out", scratch.Combine("out"), "--export", .. arguments.SelectMany(a => new[] { a.Key, a.Value })]);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Fact]
    public void A_run_of_another_model_is_refused()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, run, store) = Profiled(scratch);
        // Same shapes and partition, other weights: the content key differs.
        var other = scratch.Combine("other");
        Directory.CreateDirectory(other);
        foreach (var file in Directory.GetFiles(model)) File.Copy(file, Path.Combine(other, Path.GetFileName(file)));
        using (var network = Babel.UnitTests.Transformer.TinyModels.Create(ModelConfig.Load(model), seed: 99))
        {
            ModelCheckpoint.Save(other, ModelConfig.Load(model), network.StateDict());
        }
        var (code, _, error) = Run("eval-pruning", "--model", other, "--run", run, "--corpus", corpus, "--store", store);
        Assert.Equal(2, code);
        Assert.Contains("profiled another model", error, StringComparison.Ordinal);
        var (rateCode, _, rateError) = Run("eval-pruning", "--model", model, "--run", run, "--rates", "0.2,abc", "--store", store);
        Assert.Equal(2, rateCode);
        Assert.Contains("'abc' in --rates is not a number", rateError, StringComparison.Ordinal);
    }
    [Fact]
    public void Sparse_scores_top_k_routing_and_all_experts_equal_the_dense_model()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, run, store) = Profiled(scratch);
        var (code, output, error) = Run("sparse", "--model", model, "--corpus", corpus, "--run", run, "--top-k", "4,2,1", "--split", "all", "--out", scratch.Combine("sparse"), "--store", store);
        Assert.True(code == 0, error);
        Assert.Contains("Centroid routing", output, StringComparison.Ordinal);
        Assert.Contains("overlaps the all documents", error, StringComparison.Ordinal);
        var curves = SparseActivationCurves.Load(scratch.Combine("sparse"));
        Assert.Equal([1, 2, 4], curves.TopK);
        Assert.Equal(SparseExpertActivation.DefaultRouters, curves.Routers);
        foreach (var language in curves.Languages)
        {
            Assert.Equal(PerplexityOf(model, corpus, language.Language), language.Dense, 1e-3 * language.Dense);
            foreach (var router in curves.Routers)
            {
                Assert.Equal(language.Dense, language.Routers[router][4], 1e-3 * language.Dense);
                Assert.NotEqual(language.Dense, language.Routers[router][1], 1e-6);
            }
            // A second path: the frequency router keeping 2 of 4 experts is frequency pruning at rate 0.5, exported and scored directly.
            var exported = scratch.Combine($"pruned-{language.Language}");
            var (pruneCode, _, pruneError) = Run("prune", "--model", model, "--run", run, "--language", language.Language, "--rate", "0.5", "--strategy", "frequency", "--export", "--out", exported);
            Assert.True(pruneCode == 0, pruneError);
            var frequency = language.Routers[SparseExpertActivation.FrequencyRouter][2];
            Assert.Equal(PerplexityOf(exported, corpus, language.Language), frequency, 1e-3 * frequency);
        }
        var (noRunCode, _, noRunError) = Run("sparse", "--model", model, "--corpus", corpus, "--routers", "frequency", "--top-k", "2", "--out", scratch.Combine("no-run"), "--store", store);
        Assert.Equal(2, noRunCode);
        Assert.Contains("needs a profiling run", noRunError, StringComparison.Ordinal);
        Assert.True(curves.Speed.DenseTokensPerSecond > 0 && curves.Speed.CentroidTokensPerSecond[1] > 0 && curves.Speed.FrequencyTokensPerSecond![1] > 0);
        Assert.True(File.Exists(scratch.Combine("sparse/sparse.png")));
        var (badCode, _, badError) = Run("sparse", "--model", model, "--corpus", corpus, "--top-k", "9", "--out", scratch.Combine("bad"), "--store", store);
        Assert.Equal(2, badCode);
        Assert.Contains("outside 1..4", badError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(scratch.Combine("bad")));
    }

    /// <summary>
    /// <c>--dtype bfloat16</c> scores the model as stored in bfloat16 (the perplexities move, so bf16 really ran) and stays
    /// within a percent of float32 (mean NLL) for every variant of both studies, routers included, whose choices may flip at
    /// near ties; <c>auto</c> is refused before any job.
    /// </summary>
    [Fact]
    public void Sparse_and_eval_pruning_score_in_bfloat16_within_a_percent_of_float32()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, run, store) = Profiled(scratch);
        (SparseActivationCurves Sparse, PruningCurves Pruning) Score(string dtype)
        {
            var sparse = Run("sparse", "--model", model, "--corpus", corpus, "--run", run, "--top-k", "2", "--routers", "centroid,frequency,oracle", "--split", "all",
                "--dtype", dtype, "--out", scratch.Combine($"sparse-{dtype}"), "--store", store);
            Assert.True(sparse.Code == 0, sparse.Error);
            var pruning = Run("eval-pruning", "--model", model, "--run", run, "--rates", "0.5", "--strategies", "frequency,random", "--seeds", "1", "--split", "all",
                "--dtype", dtype, "--out", scratch.Combine($"pruning-{dtype}"), "--store", store);
            Assert.True(pruning.Code == 0, pruning.Error);
            return (SparseActivationCurves.Load(scratch.Combine($"sparse-{dtype}")), PruningCurves.Load(scratch.Combine($"pruning-{dtype}")));
        }
        var (exact, exactPruning) = Score("float32");
        var (half, halfPruning) = Score("bfloat16");
        // Compared as mean NLL (log perplexity), as the perplexity job's bfloat16 test does: within a percent.
        static void Close(double a, double b)
        {
            Assert.NotEqual(a, b);
            Assert.InRange(Math.Abs(Math.Log(b) - Math.Log(a)) / Math.Log(a), 0, 0.01);
        }
        foreach (var language in exact.Languages)
        {
            var other = half.Languages.Single(l => l.Language == language.Language);
            Close(language.Dense, other.Dense);
            foreach (var router in exact.Routers) Close(language.Routers[router][2], other.Routers[router][2]);
        }
        foreach (var language in exactPruning.Languages)
        {
            var other = halfPruning.Languages.Single(l => l.Language == language.Language);
            Close(language.Unpruned, other.Unpruned);
            foreach (var strategy in new[] { ExpertPruning.Frequency, ExpertPruning.Random }) Close(language.At(strategy, 0.5)!.Perplexity, other.At(strategy, 0.5)!.Perplexity);
        }
        var refused = Run("sparse", "--model", model, "--corpus", corpus, "--top-k", "2", "--dtype", "auto", "--out", scratch.Combine("auto"), "--store", store);
        Assert.Equal(2, refused.Code);
        Assert.False(Directory.Exists(scratch.Combine("auto")));
    }
}
