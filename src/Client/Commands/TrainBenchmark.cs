using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Babel.Grains.Engine;
using Babel.Grains.Training;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>
/// One run of the data-parallel training benchmark: ranks, steps between synchronisations, job wall time, the ranks' mean
/// step, exchange (what is left to wait for after the backward) and forward-and-backward times, and the trained model's
/// final training loss and mean held-out NLL.
/// </summary>
internal sealed record TrainRun(int Ranks, int SyncEvery, double WallSeconds, double StepSeconds, double ExchangeSeconds, int GradientValues, int Steps, string ModelSha256,
    double FinalTrainLoss, double HeldoutNll, double ComputeSeconds)
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
        var engine = await EngineConnection.OpenAsync(cluster: false, store, workers: 1, cancellationToken);
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
                trained[0].GradientValues, options.Steps, sha, result.Manifest.FinalTrainLoss, result.Manifest.Heldout.Values.Average(h => h.MeanNll),
                trained.Average(r => r.MeanComputeSeconds));
        }
        finally
        {
            // The embedded silo stops first, while the others still answer its directory calls; then they are killed.
            await engine.DisposeAsync();
            await BenchmarkSilos.StopAsync(children);
        }
    }
}

/// <summary>
/// What this machine allows N ranks, measured rather than assumed: the same job on N ranks training at once with no
/// exchange (<c>--sync-every</c> = the steps: every rank computes its micro-batches, steps its optimizer, and exchanges
/// once, at the end), so the processes still share the cores and memory bus. Ideal speed-up = one-rank step / that step;
/// data-parallel efficiency = achieved speed-up / ideal = that step / the synchronous N-rank step.
/// </summary>
internal sealed record MachineLimit(int Ranks, double ComputeOnlyStepSeconds, double IdealSpeedUp, double AchievedSpeedUp, double Efficiency)
{
    public static MachineLimit Of(TrainRun oneRank, TrainRun synchronous, TrainRun computeOnly)
    {
        // The single synchronisation at the end is taken out of the compute-only run's mean.
        var alone = computeOnly.StepSeconds - computeOnly.ExchangeSeconds;
        var ideal = oneRank.StepSeconds / alone;
        var achieved = oneRank.StepSeconds / synchronous.StepSeconds;
        return new MachineLimit(synchronous.Ranks, alone, ideal, achieved, achieved / ideal);
    }
}

/// <summary><c>bench-train.json</c> and <c>bench-train.md</c> in the work folder: the runs, the machine's limit and the settings.</summary>
internal static class TrainBenchReport
{
    public static (string Json, string Markdown) Write(string root, string preset, PretrainingOptions options, int microBatches, IReadOnlyList<TrainRun> runs,
        IReadOnlyList<MachineLimit> limits)
    {
        var json = Path.Combine(root, "bench-train.json");
        var markdown = Path.Combine(root, "bench-train.md");
        var settings = new { preset, options.Steps, options.BatchSize, options.SequenceLength, microBatches, torchThreadsPerRank = 1, Environment.ProcessorCount };
        AtomicFile.WriteAllText(json, JsonSerializer.Serialize(new { settings, runs, limits }, new JsonSerializerOptions(JsonSerializerDefaults.Web) { WriteIndented = true }));
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"`babel bench train`: '{preset}', {options.Steps} steps of {options.BatchSize} × {options.SequenceLength}, {microBatches} micro-batches per step, one torch thread per rank, {Environment.ProcessorCount} cores");
        text.AppendLine().AppendLine("| ranks | sync every | job wall s | step ms | forward + backward ms | exchange ms/step | MB per exchange | speed-up (step) | final train loss | held-out NLL | weights |");
        text.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var r in runs)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"| {r.Ranks} | {r.SyncEvery} | {r.WallSeconds:F1} | {r.StepSeconds * 1000:F0} | {r.ComputeSeconds * 1000:F0} | {r.ExchangeSeconds * 1000:F1} | {r.GradientValues * 4 / 1e6:F1} | {runs[0].StepSeconds / r.StepSeconds:F2}× | {r.FinalTrainLoss:F4} | {r.HeldoutNll:F4} | {r.ModelSha256[..12]} |");
        }
        if (limits.Count > 0)
        {
            text.AppendLine().AppendLine("| ranks | step ms without exchange (ranks at once) | ideal speed-up | achieved speed-up | data-parallel efficiency |");
            text.AppendLine("| --- | --- | --- | --- | --- |");
            foreach (var l in limits) text.AppendLine(CultureInfo.InvariantCulture, $"| {l.Ranks} | {l.ComputeOnlyStepSeconds * 1000:F0} | {l.IdealSpeedUp:F2}× | {l.AchievedSpeedUp:F2}× | {l.Efficiency:P1} |");
        }
        AtomicFile.WriteAllText(markdown, text.ToString());
        return (json, markdown);
    }
}
