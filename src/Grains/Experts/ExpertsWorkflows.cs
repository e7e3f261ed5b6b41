using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Grains.LanguageModels;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Experts;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;

namespace Babel.Grains.Experts;

/// <summary>
/// The "Unraveling Babel" workflows on the engine, as the commands and the quickstart run them: each checks what a user
/// can get wrong before any upload, uploads the inputs and builds the job's parameters (what a command submits, waiting
/// or not), and the <c>…Async</c> forms also run the job to its end and write its outputs where the command would.
/// </summary>
public static class ExpertsWorkflows
{
    public const string ModelsPrefix = "models";
    public const string CorporaPrefix = "corpora";

    /// <summary>Parameters of <c>babel moefy</c>: cheap checks first (a wrong E or method is reported before any weight is read), then the model's upload.</summary>
    public static async Task<MoefyJobParameters> MoefyParametersAsync(JobClient jobs, string modelDirectory, int experts, string method, long seed, CancellationToken cancellationToken)
    {
        var config = ModelCheckpoint.Validate(modelDirectory);
        ExpertPartition.RequireDivisible(config.IntermediateSize, experts, modelDirectory);
        MoEfication.RequireMethod(method);
        return new MoefyJobParameters(await jobs.UploadFolderAsync(modelDirectory, ModelsPrefix, cancellationToken), experts, method, seed);
    }

    /// <summary>Partitions every layer of the model as a shard of a job, then writes <c>experts.json</c> beside the model.</summary>
    public static async Task<ExpertPartition> MoefyAsync(JobClient jobs, string modelDirectory, int experts, string method, long seed,
        IProgress<JobStatus>? progress, CancellationToken cancellationToken)
    {
        var kind = jobs.Kinds.Get<MoefyJob>();
        var partition = await jobs.RunAsync(kind, await MoefyParametersAsync(jobs, modelDirectory, experts, method, seed, cancellationToken), null, progress, cancellationToken);
        kind.Save(partition, modelDirectory);
        return partition;
    }

    /// <summary>
    /// Parameters of <c>babel profile</c> from <paramref name="request"/> (its languages, rule and slicing): checks the
    /// model's experts.json (and, when given, that it has <paramref name="experts"/> experts per layer) and the rule,
    /// uploads the model and corpus, then has every language tokenised once into the artifact store by the tokenize job
    /// (reused when it already ran on the same tokenizer and corpus), whose token counts the profile is planned from. On
    /// an embedded engine without workers (<c>--no-wait</c>), <paramref name="tokenizeHere"/> is its store and this process
    /// runs the tokenize shards itself.
    /// </summary>
    public static async Task<ProfileJobParameters> ProfileParametersAsync(JobClient jobs, string modelDirectory, string corpusDirectory, ProfileJobParameters request,
        int? experts, CancellationToken cancellationToken, IArtifactStore? tokenizeHere = null, IProgress<JobStatus>? progress = null)
    {
        var opened = Corpus.Open(corpusDirectory);
        var config = ModelCheckpoint.Validate(modelDirectory);
        var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
        if (experts is { } wanted && wanted != partition.Experts)
        {
            throw new UserInputException($"{modelDirectory}/{ExpertPartition.FileName} has {partition.Experts} experts per layer, not {wanted}; run 'babel moefy --model {modelDirectory} --experts {wanted}'.");
        }
        var rule = ActivationRule.Parse(request.Rule);
        rule.CheckFits(partition);
        var uploaded = request with
        {
            Model = await jobs.UploadFolderAsync(modelDirectory, ModelsPrefix, cancellationToken),
            Corpus = await jobs.UploadFolderAsync(opened.Directory, CorporaPrefix, cancellationToken),
            Rule = rule.ToString(),
        };
        jobs.Kinds.Get<ProfileJob>().CheckOptions(uploaded);
        var streams = await jobs.Kinds.Get<TokenizeJob>().StreamsAsync(jobs, uploaded.TokenizeParameters(), modelDirectory, opened.Directory, tokenizeHere, progress, cancellationToken);
        return uploaded with { Streams = streams };
    }

    /// <summary>Runs the profile job to its end and writes the run (activations.json, manifest.json, heatmaps, report.html) into <paramref name="runDirectory"/>.</summary>
    public static async Task<ProfileRun> ProfileAsync(JobClient jobs, string modelDirectory, string corpusDirectory, ProfileJobParameters request, string runDirectory,
        IProgress<JobStatus>? progress, CancellationToken cancellationToken)
    {
        var kind = jobs.Kinds.Get<ProfileJob>();
        var run = await jobs.RunAsync(kind, await ProfileParametersAsync(jobs, modelDirectory, corpusDirectory, request, null, cancellationToken, progress: progress), null, progress, cancellationToken);
        kind.Save(run, runDirectory);
        return run;
    }

    /// <summary>
    /// Parameters of <c>babel eval-pruning</c>: the run must have profiled this very model; the corpus defaults to the
    /// one the run profiled; a run that profiled the documents scored here gets a warning on <paramref name="warnings"/>.
    /// The masks are chosen here, from the run's profile; the shards are weighed by the documents the tokenize job counts
    /// (run as for <see cref="ProfileParametersAsync"/>).
    /// </summary>
    public static async Task<PruningEvaluationParameters> PruningParametersAsync(JobClient jobs, string modelDirectory, string runDirectory, string? corpusDirectory,
        PruningRequest request, TextWriter warnings, CancellationToken cancellationToken, IArtifactStore? tokenizeHere = null, IProgress<JobStatus>? progress = null)
    {
        PruningStudy.Validate(request);
        // The upload hashes the model folder; its key is what the run must have profiled, so the folder is read once.
        var modelKey = await jobs.UploadFolderAsync(modelDirectory, ModelsPrefix, cancellationToken);
        var run = ProfileRun.Load(runDirectory);
        var partition = run.PartitionOf(modelDirectory, modelKey, runDirectory);
        var corpusFolder = corpusDirectory ?? (run.Manifest.CorpusFolder is { } folder && Directory.Exists(folder)
            ? folder
            : throw new UserInputException($"{Path.Combine(runDirectory, RunManifest.FileName)} does not name a corpus folder that exists here; pass --corpus."));
        var opened = Corpus.Open(corpusFolder);
        var codes = request.Languages ?? [.. run.Profile.Languages.Keys];
        foreach (var code in codes)
        {
            if (!run.Profile.Languages.ContainsKey(code)) throw new UserInputException($"Language '{code}' is not in the run; it profiled {string.Join(", ", run.Profile.Languages.Keys)}.");
            if (opened.Manifest.FindLanguage(code) is null) throw new UserInputException($"Language '{code}' is not in the corpus {corpusFolder}.");
        }
        PruningStudy.Validate(request, partition.Experts);
        if (request.Split != "train" && run.Manifest.Split == "all")
        {
            warnings.WriteLine($"warning: the run profiled the 'all' split, which includes the {request.Split} documents scored here; profile --split train for a clean evaluation.");
        }
        var resolved = request with { Languages = codes };
        var corpusKey = await jobs.UploadFolderAsync(opened.Directory, CorporaPrefix, cancellationToken);
        var parameters = new PruningEvaluationParameters(modelKey, corpusKey, resolved, PruningStudy.Masks(run.Profile, codes, resolved));
        jobs.Kinds.Get<PruningEvaluationJob>().CheckOptions(parameters);
        var streams = await jobs.Kinds.Get<TokenizeJob>().StreamsAsync(jobs, new TokenizeJobParameters(modelKey, corpusKey, codes, request.Split), modelDirectory, opened.Directory,
            tokenizeHere, progress, cancellationToken);
        return parameters with { Streams = streams };
    }

    /// <summary>Runs the pruning evaluation to its end and writes the curves, table and plots into <paramref name="outDirectory"/>.</summary>
    public static async Task<PruningCurves> EvaluatePruningAsync(JobClient jobs, string modelDirectory, string runDirectory, string? corpusDirectory, PruningRequest request,
        string outDirectory, IProgress<JobStatus>? progress, TextWriter warnings, CancellationToken cancellationToken)
    {
        var kind = jobs.Kinds.Get<PruningEvaluationJob>();
        var parameters = await PruningParametersAsync(jobs, modelDirectory, runDirectory, corpusDirectory, request, warnings, cancellationToken, progress: progress);
        var curves = await jobs.RunAsync(kind, parameters, null, progress, cancellationToken);
        kind.Save(curves, outDirectory);
        return curves;
    }

    /// <summary>
    /// Parameters of <c>babel sparse</c>: the request checked against the model's experts.json, then the model and corpus
    /// uploaded and the languages' documents counted by the tokenize job (run as for <see cref="ProfileParametersAsync"/>).
    /// The frequency router needs <paramref name="runDirectory"/>, a profiling run of this very model: its masks are chosen
    /// here from the run's frequencies, and a run that profiled the documents scored here gets a warning on <paramref name="warnings"/>.
    /// </summary>
    public static async Task<SparseActivationParameters> SparseParametersAsync(JobClient jobs, string modelDirectory, string corpusDirectory, SparseRequest request,
        string? runDirectory, TextWriter? warnings, CancellationToken cancellationToken, IArtifactStore? tokenizeHere = null, IProgress<JobStatus>? progress = null)
    {
        var opened = Corpus.Open(corpusDirectory);
        var config = ModelCheckpoint.Validate(modelDirectory);
        var partition = ExpertPartition.Load(modelDirectory).CheckFits(config, Path.Combine(modelDirectory, ExpertPartition.FileName));
        SparseActivationStudy.Validate(request, partition.Experts, modelDirectory);
        var frequency = request.Routers.Contains(SparseExpertActivation.FrequencyRouter);
        if (frequency && runDirectory is null) throw new UserInputException("The frequency router needs a profiling run of the model; pass --run RUN_DIR (see 'babel profile').");
        var modelKey = await jobs.UploadFolderAsync(modelDirectory, ModelsPrefix, cancellationToken);
        IReadOnlyList<FrequencyRouterMask>? masks = null;
        if (frequency)
        {
            var run = ProfileRun.Load(runDirectory!);
            run.PartitionOf(modelDirectory, modelKey, runDirectory!);
            var missing = request.Languages.FirstOrDefault(l => !run.Profile.Languages.ContainsKey(l));
            if (missing is not null) throw new UserInputException($"Language '{missing}' is not in the run; it profiled {string.Join(", ", run.Profile.Languages.Keys)}.");
            var profiled = run.Manifest.Split ?? "all";
            if (profiled == "all" || request.Split == "all" || profiled == request.Split)
            {
                warnings?.WriteLine($"warning: the run profiled the '{profiled}' split, which overlaps the {request.Split} documents scored here; profile --split train and score heldout for a clean evaluation of the frequency router.");
            }
            masks = SparseActivationStudy.FrequencyMasks(run.Profile, request);
        }
        var corpusKey = await jobs.UploadFolderAsync(opened.Directory, CorporaPrefix, cancellationToken);
        var parameters = new SparseActivationParameters(modelKey, corpusKey, request, FrequencyMasks: masks);
        jobs.Kinds.Get<SparseActivationJob>().CheckOptions(parameters);
        var streams = await jobs.Kinds.Get<TokenizeJob>().StreamsAsync(jobs, new TokenizeJobParameters(modelKey, corpusKey, request.Languages, request.Split), modelDirectory,
            opened.Directory, tokenizeHere, progress, cancellationToken);
        return parameters with { Streams = streams };
    }

    /// <summary>Runs the sparse-activation study to its end and writes sparse.json, sparse.md and sparse.png into <paramref name="outDirectory"/>.</summary>
    public static async Task<SparseActivationCurves> SparseAsync(JobClient jobs, string modelDirectory, string corpusDirectory, SparseRequest request, string? runDirectory,
        string outDirectory, IProgress<JobStatus>? progress, TextWriter? warnings, CancellationToken cancellationToken)
    {
        var kind = jobs.Kinds.Get<SparseActivationJob>();
        var parameters = await SparseParametersAsync(jobs, modelDirectory, corpusDirectory, request, runDirectory, warnings, cancellationToken, progress: progress);
        var curves = await jobs.RunAsync(kind, parameters, null, progress, cancellationToken);
        kind.Save(curves, outDirectory);
        return curves;
    }

    /// <summary>Where <see cref="CompareTunedAsync"/> writes the base-vs-instruct comparison inside the base run.</summary>
    public const string InstructComparisonFolder = "instruct-comparison";

    /// <summary>
    /// The second half of the base-vs-instruct study: profiles the instruction-tuned copy <paramref name="tunedDirectory"/>
    /// with the base run's request into <paramref name="tunedRun"/>, then compares it with <paramref name="baseRun"/>
    /// (B = tuned, A = base) in <paramref name="baseRun"/>/instruct-comparison/, which the base run's report.html shows.
    /// </summary>
    public static async Task<(ProfileRun Tuned, Modeling.Analysis.AnalysisOutcome Comparison)> CompareTunedAsync(JobClient jobs, string tunedDirectory, string corpusDirectory,
        ProfileJobParameters request, string baseRun, string tunedRun, IProgress<JobStatus>? progress, CancellationToken cancellationToken)
    {
        var tuned = await ProfileAsync(jobs, tunedDirectory, corpusDirectory, request, tunedRun, progress, cancellationToken);
        return (tuned, Modeling.Analysis.ProfileRunAnalysis.Compare(baseRun, tunedRun, Path.Combine(baseRun, InstructComparisonFolder)));
    }

    /// <summary>The run in <paramref name="runDirectory"/> and the partition of the model it must have profiled (the model folder is hashed, not uploaded).</summary>
    public static async Task<(ProfileRun Run, ExpertPartition Partition)> OpenRunOfModelAsync(string modelDirectory, string runDirectory, CancellationToken cancellationToken)
    {
        var run = ProfileRun.Load(runDirectory);
        var key = $"{ModelsPrefix}/{await ArtifactFolders.ComputeContentHashAsync(modelDirectory, cancellationToken)}";
        return (run, run.PartitionOf(modelDirectory, key, runDirectory));
    }
}
