using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel sparse</c>: held-out perplexity when every token runs only its top-K experts per layer (centroid or oracle
/// router), as a job on the engine, and the measured speed of the sparse computation on this machine.
/// </summary>
internal static class SparseCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder with tokenizer.json and experts.json (see 'babel moefy').", Required = true };
        var corpus = new Option<string>("--corpus") { Description = "Corpus folder to evaluate on.", Required = true };
        var languages = new Option<string?>("--languages") { Description = "Comma-separated language codes (default: every language of the corpus)." };
        var topK = new Option<string>("--top-k") { Description = "Comma-separated K: experts each token runs per layer.", DefaultValueFactory = _ => "1,2,4,8" };
        var routers = new Option<string>("--routers") { Description = "Comma-separated: centroid, oracle.", DefaultValueFactory = _ => string.Join(",", SparseExpertActivation.Routers) };
        var split = new Option<string>("--split") { Description = "Split to score: heldout (default), train or all.", DefaultValueFactory = _ => "heldout" };
        split.AcceptOnlyFromAmong("all", "train", "heldout");
        var output = new Option<string>("--out") { Description = "Output folder: sparse.json, sparse.md, sparse.png.", Required = true };
        var workers = new Option<int>("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };
        var engine = new EngineOptions();
        var command = new Command("sparse", "Perplexity with only the top-K experts per token (centroid or oracle router) against the fraction of FFN compute kept, and its measured speed.")
        {
            model, corpus, languages, topK, routers, split, output, workers,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var opened = Corpus.Open(parse.GetValue(corpus)!);
            var request = new SparseRequest(
                ParseTopK(parse.GetValue(topK)!),
                [.. parse.GetValue(routers)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)],
                CorpusLanguages.Select(opened, parse.GetValue(languages)),
                parse.GetValue(split)!);
            await using var connection = await engine.OpenAsync(parse, parse.GetValue(workers), cancellationToken);
            var curves = await RunAsync(connection, parse.GetValue(model)!, opened, request, parse.GetValue(output)!, parse.InvocationConfiguration.Error, cancellationToken);
            parse.InvocationConfiguration.Output.WriteLine(curves.Reading());
            return 0;
        });
        return command;
    }

    public sealed record SparseRequest(IReadOnlyList<int> TopK, IReadOnlyList<string> Routers, IReadOnlyList<string> Languages, string Split);

    public static async Task<SparseActivationCurves> RunAsync(EngineConnection connection, string modelDirectory, Corpus opened, SparseRequest request,
        string outDirectory, TextWriter progress, CancellationToken cancellationToken)
    {
        var config = ModelCheckpoint.Validate(modelDirectory);
        var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
        if (request.Routers.Count == 0) throw new UserInputException("--routers names no router.");
        foreach (var router in request.Routers)
        {
            if (!SparseExpertActivation.Routers.Contains(router)) throw new UserInputException($"Unknown router '{router}'; use {string.Join(" or ", SparseExpertActivation.Routers)}.");
        }
        foreach (var k in request.TopK)
        {
            if (k < 1 || k > partition.Experts) throw new UserInputException($"Top-k {k} is outside 1..{partition.Experts}, the experts per layer of {modelDirectory}.");
        }
        var dense = PruningEvaluationJob.Encode([.. Enumerable.Range(0, partition.Layers).Select(_ => new bool[partition.Experts])]);
        static string Name(string language, string router, int k) => string.Create(CultureInfo.InvariantCulture, $"{language}/{router}/{k}");
        var variants = new List<PruningVariant>();
        foreach (var language in request.Languages)
        {
            variants.Add(new PruningVariant(Name(language, "dense", partition.Experts), language, dense));
            variants.AddRange(request.Routers.SelectMany(router => request.TopK.Select(k => new PruningVariant(Name(language, router, k), language, "", router, k))));
        }
        var parameters = new PruningEvaluationParameters(
            await connection.Jobs.UploadFolderAsync(modelDirectory, "models", cancellationToken),
            await connection.Jobs.UploadFolderAsync(opened.Directory, "corpora", cancellationToken),
            variants, request.Split);
        var spec = JobClient.Spec(PruningEvaluationJob.KindName, PruningEvaluationJob.Serialize(parameters));
        var status = await JobProgress.RunAsync(connection, JobClient.DefaultJobId(spec), spec, progress, cancellationToken);
        double PerplexityOf(string name) => Math.Exp(PruningEvaluationJob.MeanNll(status.Totals, name));

        progress.WriteLine("measuring forward speed, dense and sparse, on this machine");
        var speed = MeasureSpeed(modelDirectory, partition, opened, request, cancellationToken);
        var curves = new SparseActivationCurves(parameters.Model, request.Split, partition.Experts, request.TopK, request.Routers,
            [.. request.Languages.Select(language => new LanguageSparseCurves(language, PerplexityOf(Name(language, "dense", partition.Experts)),
                request.Routers.ToDictionary(router => router, router => (IReadOnlyDictionary<int, double>)request.TopK.ToDictionary(k => k, k => PerplexityOf(Name(language, router, k))))))],
            speed);
        AtomicFile.WriteDirectory(outDirectory, curves.Save);
        progress.WriteLine($"wrote {Path.GetFullPath(Path.Combine(outDirectory, SparseActivationCurves.FileName))}, {SparseActivationCurves.TableFileName} and {SparseActivationCurves.Image}");
        return curves;
    }

    /// <summary>Forward tokens/s over the first held-out documents: dense, then centroid-routed sparse computation at each K (best of three).</summary>
    private static SparseSpeed MeasureSpeed(string modelDirectory, ExpertPartition partition, Corpus opened, SparseRequest request, CancellationToken cancellationToken)
    {
        TorchRuntime.Initialize();
        using var model = CausalLanguageModel.Load(modelDirectory);
        using var tokenizer = HuggingFaceTokenizer.Load(modelDirectory);
        var texts = request.Languages.SelectMany(l => opened.ReadDocuments(l, Babel.Grains.Engine.JobParameters.Split(request.Split)).Take(2)).Select(d => d.Text).ToList();
        double Rate(IFeedForwardHook? hook)
        {
            var best = 0.0;
            for (var repeat = 0; repeat < 3; repeat++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var stopwatch = Stopwatch.StartNew();
                var sum = Perplexity.Accumulate(model, tokenizer, texts, hook: hook);
                best = Math.Max(best, sum.Tokens / stopwatch.Elapsed.TotalSeconds);
            }
            return best;
        }
        Rate(null);
        var denseRate = Rate(null);
        var sparse = new Dictionary<int, double>();
        foreach (var k in request.TopK)
        {
            using var hook = new SparseExpertActivation(model, partition, k, SparseExpertActivation.CentroidRouter);
            sparse[k] = Rate(hook);
        }
        return new SparseSpeed(denseRate, sparse, $"{Environment.ProcessorCount} cores, torch threads {TorchSharp.torch.get_num_threads()}");
    }

    private static List<int> ParseTopK(string list)
    {
        var values = new List<int>();
        foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(item, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k)) throw new UserInputException($"'{item}' in --top-k is not a whole number.");
            values.Add(k);
        }
        if (values.Count == 0) throw new UserInputException("--top-k names no K.");
        return [.. values.Distinct().Order()];
    }
}
