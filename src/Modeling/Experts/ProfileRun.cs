using System.Globalization;
using Babel.Modeling.Analysis;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Distillation;
using Babel.Modeling.Reports;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>
/// A profile run folder: <c>activations.json</c> (the counts), <c>manifest.json</c> (where they came from), the heatmaps
/// and <c>report.html</c>, which also shows what the applications wrote into the run's own sub-folders (analyses,
/// pruning curves, sparse activation, student distillation).
/// </summary>
public sealed record ProfileRun(ActivationProfile Profile, RunManifest Manifest)
{
    /// <summary>Where <c>babel eval-pruning</c> writes inside a run by default, so the report finds it.</summary>
    public const string PruningFolder = "pruning";
    /// <summary>Where the quickstart's <c>babel sparse</c> writes inside the run.</summary>
    public const string SparseFolder = "sparse";
    /// <summary>Where the quickstart's student grid writes inside the run.</summary>
    public const string DistillationFolder = "distillation";

    /// <summary>The run in <paramref name="runDirectory"/>; a missing or corrupt file is one sentence.</summary>
    public static ProfileRun Load(string runDirectory) => new(ActivationProfile.Load(runDirectory), RunManifest.Read(runDirectory));

    /// <summary>Writes activations.json, manifest.json, the heatmaps and report.html into <paramref name="runDirectory"/>; returns the report's path.</summary>
    public string Save(string runDirectory)
    {
        Directory.CreateDirectory(runDirectory);
        Profile.Save(runDirectory);
        Manifest.Save(runDirectory);
        return WriteReport(runDirectory);
    }

    /// <summary>"profiled 12,345 tokens in 28 languages (1,234 tokens/s)".</summary>
    public string Summary()
    {
        var tokens = Profile.Languages.Values.Sum(l => l.Tokens);
        return string.Create(CultureInfo.InvariantCulture, $"profiled {tokens:N0} tokens in {Profile.Languages.Count} languages ({Manifest.TokensPerSecond ?? double.NaN:N0} tokens/s)");
    }

    /// <summary>Writes the heatmaps and report.html of the run in <paramref name="runDirectory"/> (with every section found there); returns the report's full path.</summary>
    public static string RewriteReport(string runDirectory) => Load(runDirectory).WriteReport(runDirectory);

    /// <summary>Writes the heatmaps and report.html with the sections found in <paramref name="runDirectory"/>; returns the report's full path.</summary>
    public string WriteReport(string runDirectory)
    {
        List<ReportSection> sections = [.. AnalysisSections.Read(runDirectory)];
        // The applications' results, when they were written into the run's default folders.
        if (File.Exists(Path.Combine(runDirectory, PruningFolder, PruningCurves.FileName)))
        {
            sections.Add(PruningCurves.Load(Path.Combine(runDirectory, PruningFolder)).Section(PruningFolder));
        }
        if (File.Exists(Path.Combine(runDirectory, SparseFolder, SparseActivationCurves.FileName)))
        {
            sections.Add(SparseActivationCurves.Load(Path.Combine(runDirectory, SparseFolder)).Section(SparseFolder));
        }
        if (File.Exists(Path.Combine(runDirectory, DistillationFolder, StudentGridReport.JsonFile)))
        {
            sections.Add(StudentGridReport.Load(Path.Combine(runDirectory, DistillationFolder)).Section(DistillationFolder));
        }
        return Path.GetFullPath(ActivationReport.Write(runDirectory, Profile, Manifest.ReportFields(), sections));
    }

    /// <summary>
    /// The run's profile and the partition of the model in <paramref name="modelDirectory"/>, after checking that the run
    /// profiled this very model: <paramref name="modelKey"/> is the model folder's artifact key.
    /// </summary>
    public ExpertPartition PartitionOf(string modelDirectory, string modelKey, string runDirectory)
    {
        var config = ModelCheckpoint.Validate(modelDirectory);
        var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
        if (Profile.Model != modelKey || Profile.Layers != partition.Layers || Profile.Experts != partition.Experts)
        {
            throw new UserInputException($"{runDirectory} profiled another model ({Profile.Model}, {Profile.Layers} layers × {Profile.Experts} experts), not {modelDirectory} ({modelKey}); profile this model with 'babel profile' first.");
        }
        return partition;
    }
}
