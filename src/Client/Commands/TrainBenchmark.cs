using System.Diagnostics;
using System.Security.Cryptography;
using Babel.Grains.Engine;
using Babel.Grains.Training;
using Babel.Modeling.Training;

namespace Babel.Client.Commands;

/// <summary>
/// One run of the data-parallel training benchmark: ranks, steps between synchronisations, job wall time, the ranks' mean
/// step and exchange times, and the trained model's final training loss and mean held-out NLL.
/// </summary>
internal sealed record TrainRun(int Ranks, int SyncEvery, double WallSeconds, double StepSeconds, double ExchangeSeconds, int GradientValues, int Steps, string ModelSha256,
    double FinalTrainLoss, double HeldoutNll)
{
    /// <summary>Global-batch tokens per second of steady steps.</summary>
    public double TokensPerSecond(PretrainingOptions options) => options.BatchSize * (double)options.SequenceLength / StepSeconds;
}

/// <summary>
/// <c>babel bench train</c>: the same data-parallel pretraining job on N ranks, each on its own silo process of this machine
/// (this process's embedded silo and N − 1 others, one worker with one torch thread each), every run cutting the global
/// batch into the same micro-batches, so every synchronous run ends with the same weights (DiLoCo runs, with local steps
/// between synchronisations, end elsewhere: their losses are what compares).
/// </summary>
internal static class TrainBenchmark
{
    public static async Task<TrainRun> RunAsync(int ranks, int microBatches, string corpus, string tokenizer, string preset, PretrainingOptions options, string root,
        CancellationToken cancellationToken)
    {
        var store = Path.Combine(root, $"run-{ranks}-{Guid.NewGuid():N}");
        await using var engine = await EngineConnection.OpenAsync(cluster: false, store, workers: 1, cancellationToken);
        var children = new List<Process>();
        try
        {
            for (var i = 1; i < ranks; i++) children.Add(ClusterBenchmark.StartSilo(store, engine.EmbeddedSiloPort!.Value));
            await BenchmarkSilos.WaitForHostsAsync(engine.Grains, ranks, children, cancellationToken);
            var kind = engine.Jobs.Kinds.Get<PretrainJob>();
            var parameters = await PretrainJob.UploadInputsAsync(engine.Jobs, corpus, tokenizer, preset, null, options, ranks, microBatches, TimeSpan.FromSeconds(120), cancellationToken);
            var stopwatch = Stopwatch.StartNew();
            var result = await engine.Jobs.RunAsync(kind, parameters, new JobOptions($"bench-train-{Guid.NewGuid():N}", LeaseDuration: TimeSpan.FromMinutes(4)), null, cancellationToken);
            var wall = stopwatch.Elapsed.TotalSeconds;
            var trained = result.Trained;
            using var zip = new System.IO.Compression.ZipArchive(new MemoryStream(result.ModelZip), System.IO.Compression.ZipArchiveMode.Read);
            await using var weights = zip.GetEntry("model.safetensors")!.Open();
            var sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(weights, cancellationToken));
            return new TrainRun(trained.Count, options.SyncEvery, wall, trained.Average(r => r.MeanStepSeconds), trained.Average(r => r.MeanExchangeSeconds),
                trained[0].GradientValues, options.Steps, sha, result.Manifest.FinalTrainLoss, result.Manifest.Heldout.Values.Average(h => h.MeanNll));
        }
        finally
        {
            await BenchmarkSilos.StopAsync(children);
        }
    }
}
