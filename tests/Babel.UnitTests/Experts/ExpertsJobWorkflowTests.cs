using System.Text.Json.Nodes;
using Babel.Client;
using Babel.Modeling.Experts;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Experts;

/// <summary>
/// The job workflow of the experts commands: <c>--no-wait</c> + <c>watch</c> + <c>result</c> writes the bytes the waiting
/// command writes for the same job (profile, moefy, eval-pruning, sparse), and a corrupt manifest.json is an input error.
/// </summary>
public class ExpertsJobWorkflowTests
{
    private static (string Model, string Corpus, string Store) Inputs(ScratchFolder scratch, bool partitioned = true)
    {
        var (model, corpus) = JobTestInputs.Write(scratch);
        if (partitioned)
        {
            using var network = CausalLanguageModel.Load(model);
            MoEfication.Partition(network, 4, MoEfication.Random, seed: 3).Save(model);
        }
        return (model, corpus, scratch.Combine("store"));
    }

    /// <summary>
    /// Submits <paramref name="command"/> with --no-wait and no worker, follows it with watch, writes its result into
    /// <paramref name="resultFolder"/>, then runs the waiting command, which finds the same (finished) job.
    /// </summary>
    private static void NoWaitWatchResultThenWait(string[] command, string store, string resultFolder)
    {
        var submitted = Run([.. command, "--store", store, "--no-wait", "--workers", "0"]);
        Assert.True(submitted.Code == 0, submitted.Error);
        var jobId = submitted.Output.Trim();
        Assert.Matches("^[a-z-]+-[0-9a-f]{12}$", jobId);
        var watched = Run("watch", jobId, "--store", store);
        Assert.True(watched.Code == 0, watched.Error);
        var result = Run("result", jobId, "--store", store, "--out", resultFolder);
        Assert.True(result.Code == 0, result.Error);
        var waited = Run([.. command, "--store", store]);
        Assert.True(waited.Code == 0, waited.Error);
        Assert.Contains($"job {jobId}:", waited.Error, StringComparison.Ordinal);
    }

    private static void AssertSameFiles(string expected, string actual, params string[] required)
    {
        var names = Directory.GetFiles(expected).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(names, Directory.GetFiles(actual).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.All(required, file => Assert.Contains(file, names));
        foreach (var name in names)
        {
            Assert.True(File.ReadAllBytes(Path.Combine(expected, name!)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actual, name!))), $"{name} differs");
        }
    }

    [Fact]
    public void A_bad_option_of_a_kind_planned_by_a_tokenize_job_is_one_sentence_before_any_job_runs()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch);

        var run = Run("profile", "--model", model, "--corpus", corpus, "--rule", "topk:2", "--shard-tokens", "0", "--out", scratch.Combine("run"), "--store", store);
        Assert.Equal(2, run.Code);
        Assert.Contains("--shard-tokens", run.Error, StringComparison.Ordinal);
        // Neither the tokenize job nor the profile job was submitted.
        var list = Run("status", "--store", store, "--format", "json");
        Assert.True(list.Code == 0, list.Error);
        Assert.Empty(JsonNode.Parse(list.Output)!["jobs"]!.AsArray());
    }

    [Fact]
    public void Profile_result_is_byte_identical_to_the_waiting_run_with_the_jobs_wall_time_and_origin()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch);
        string[] profile = ["profile", "--model", model, "--corpus", corpus, "--rule", "topk:2", "--sequence-length", "16", "--out", scratch.Combine("waited")];
        NoWaitWatchResultThenWait(profile, store, scratch.Combine("result"));
        AssertSameFiles(scratch.Combine("waited"), scratch.Combine("result"), ActivationProfile.FileName, RunManifest.FileName, ActivationReport.FileName, "heatmaps.png");

        var manifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("result/manifest.json")))!;
        Assert.Equal(Path.GetFullPath(model), (string?)manifest["model_folder"]);
        Assert.Equal(Path.GetFullPath(corpus), (string?)manifest["corpus_folder"]);
        Assert.Equal("t", (string?)manifest["corpus_name"]);
        Assert.Equal("random", (string?)manifest["partition"]!["method"]);
        Assert.Equal(3, (long)manifest["partition"]!["seed"]!);
        Assert.True((double)manifest["wall_seconds"]! > 0);
        Assert.Equal((long)manifest["tokens"]! / (double)manifest["wall_seconds"]!, (double)manifest["tokens_per_second"]!, 1e-9);
        Assert.Equal(RunManifest.Read(scratch.Combine("result")).ToJson(), File.ReadAllText(scratch.Combine("result/manifest.json")));
    }

    [Fact]
    public void Moefy_result_is_the_experts_json_the_waiting_run_writes_beside_the_model()
    {
        using var scratch = new ScratchFolder();
        var (model, _, store) = Inputs(scratch, partitioned: false);
        NoWaitWatchResultThenWait(["moefy", "--model", model, "--experts", "4", "--seed", "3"], store, scratch.Combine("result"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(model, ExpertPartition.FileName)), File.ReadAllBytes(scratch.Combine("result/experts.json")));
    }

    [Fact]
    public void Eval_pruning_result_is_byte_identical_to_the_waiting_run()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch);
        var run = scratch.Combine("run");
        var profiled = Run("profile", "--model", model, "--corpus", corpus, "--rule", "topk:2", "--sequence-length", "16", "--out", run, "--store", store);
        Assert.True(profiled.Code == 0, profiled.Error);
        NoWaitWatchResultThenWait(["eval-pruning", "--model", model, "--run", run, "--rates", "0.25,0.5", "--seeds", "2", "--split", "all", "--out", scratch.Combine("waited")],
            store, scratch.Combine("result"));
        AssertSameFiles(scratch.Combine("waited"), scratch.Combine("result"), PruningCurves.FileName, PruningCurves.TableFileName, PruningCurves.SummaryImage);
        Assert.Equal(2, PruningCurves.Load(scratch.Combine("result")).Languages.Count);
    }

    [Fact]
    public void Sparse_result_is_byte_identical_to_the_waiting_run_speed_included()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch);
        NoWaitWatchResultThenWait(["sparse", "--model", model, "--corpus", corpus, "--top-k", "1,4", "--routers", "centroid", "--split", "all", "--out", scratch.Combine("waited")],
            store, scratch.Combine("result"));
        AssertSameFiles(scratch.Combine("waited"), scratch.Combine("result"), SparseActivationCurves.FileName, SparseActivationCurves.TableFileName, SparseActivationCurves.Image);
        var curves = SparseActivationCurves.Load(scratch.Combine("result"));
        Assert.True(curves.Speed.DenseTokensPerSecond > 0 && curves.Speed.CentroidTokensPerSecond[4] > 0);
    }

    [Fact]
    public async Task The_quickstarts_workflows_write_what_the_commands_write()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch, partitioned: false);
        var run = scratch.Combine("run");
        await using (var engine = await Babel.Client.EngineConnection.OpenAsync(cluster: false, store, workers: 1))
        {
            var partition = await Grains.Experts.ExpertsWorkflows.MoefyAsync(engine.Jobs, model, 4, MoEfication.Random, 3, null, CancellationToken.None);
            Assert.Equal(ExpertPartition.Load(model).ExpertOfNeuron, partition.ExpertOfNeuron);
            await Grains.Experts.ExpertsWorkflows.ProfileAsync(engine.Jobs, model, corpus, new Grains.Experts.ProfileJobParameters("", "", ["eng", "fra"], "topk:2", SequenceLength: 16),
                run, null, CancellationToken.None);
            await Grains.Experts.ExpertsWorkflows.EvaluatePruningAsync(engine.Jobs, model, run, null, new PruningRequest([0.5], [ExpertPruning.Frequency], null, 1, "all"),
                Path.Combine(run, ProfileRun.PruningFolder), null, TextWriter.Null, CancellationToken.None);
            await Grains.Experts.ExpertsWorkflows.SparseAsync(engine.Jobs, model, corpus, new SparseRequest([2], [SparseExpertActivation.OracleRouter], ["eng", "fra"], "all"),
                null, Path.Combine(run, ProfileRun.SparseFolder), null, TextWriter.Null, CancellationToken.None);
        }
        // The commands find the same (finished) jobs and write the same bytes.
        (string[] Args, string Folder, string Written)[] commands =
        [
            (["moefy", "--model", model, "--experts", "4", "--method", "random", "--seed", "3"], model, model),
            (["profile", "--model", model, "--corpus", corpus, "--languages", "eng,fra", "--rule", "topk:2", "--sequence-length", "16", "--out", scratch.Combine("profile")], run, scratch.Combine("profile")),
            (["eval-pruning", "--model", model, "--run", run, "--rates", "0.5", "--strategies", "frequency", "--seeds", "1", "--split", "all", "--out", scratch.Combine("pruning")],
                Path.Combine(run, ProfileRun.PruningFolder), scratch.Combine("pruning")),
            (["sparse", "--model", model, "--corpus", corpus, "--top-k", "2", "--routers", "oracle", "--split", "all", "--out", scratch.Combine("sparse")],
                Path.Combine(run, ProfileRun.SparseFolder), scratch.Combine("sparse")),
        ];
        foreach (var (args, folder, written) in commands)
        {
            var before = Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
            var (code, _, error) = Run([.. args, "--store", store]);
            Assert.True(code == 0, error);
            // report.html also shows the sections the run gained after its profile.
            foreach (var (name, bytes) in before.Where(f => f.Key != ActivationReport.FileName)) Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(written, name))), $"{args[0]}: {name} differs");
        }
    }

    [Theory]
    [InlineData("report")]
    [InlineData("prune")]
    [InlineData("eval-pruning")]
    public void A_corrupt_manifest_is_an_input_error_of_one_sentence(string command)
    {
        using var scratch = new ScratchFolder();
        var (model, corpus, store) = Inputs(scratch);
        var run = scratch.Combine("run");
        Directory.CreateDirectory(run);
        new ActivationProfile("models/x", 2, 4, "topk:2", new Dictionary<string, LanguageActivations>
        {
            ["eng"] = new(10, [[5, 5, 5, 5], [5, 5, 5, 5]]),
        }).Save(run);
        File.WriteAllText(Path.Combine(run, RunManifest.FileName), "{\"corpus_folder\": ");
        string[] args = command switch
        {
            "report" => ["report", "--run", run],
            "prune" => ["prune", "--model", model, "--run", run, "--language", "eng", "--rate", "0.25", "--out", scratch.Combine("out")],
            _ => ["eval-pruning", "--model", model, "--run", run, "--corpus", corpus, "--store", store],
        };
        var (code, output, error) = Run(args);
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Equal("", output);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: {Path.Combine(run, RunManifest.FileName)} is not a valid run manifest (", line, StringComparison.Ordinal);
        Assert.EndsWith("run 'babel profile' again to rewrite it.", line.TrimEnd(), StringComparison.Ordinal);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }
}
