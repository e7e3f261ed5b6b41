using System.CommandLine;
using System.Globalization;
using Babel.Grains.Experts;
using Babel.Modeling.Experts;

namespace Babel.Client.Commands;

/// <summary><c>babel prune</c>: which experts to switch off for a language, from a profiling run, optionally exported as a smaller checkpoint.</summary>
internal static class PruneCommand
{
    public static Command Create()
    {
        var model = ModelOption.Create("Model folder the run profiled (config.json, safetensors, tokenizer.json, experts.json).");
        var run = new Option<string>("--run") { Description = "Profiling run folder (activations.json) of this model.", Required = true };
        var language = new Option<string>("--language") { Description = "Language whose least active experts are pruned, or 'all' (every language of the run pooled).", Required = true };
        var rate = new Option<double>("--rate") { Description = "Fraction of experts to prune in (0, 1); round(rate × experts) per layer.", Required = true };
        var strategy = new Option<string>("--strategy") { Description = "frequency, random, layerwise or concentration.", DefaultValueFactory = _ => ExpertPruning.Frequency };
        strategy.AcceptOnlyFromAmong([.. ExpertPruning.Strategies]);
        var seed = new Option<long>("--seed") { Description = "Seed of the random strategy.", DefaultValueFactory = _ => 0 };
        var export = new Option<bool>("--export") { Description = "Also write the physically smaller checkpoint (pruned neurons removed, per-layer widths in config.json)." };
        var output = new Option<string>("--out") { Description = "Folder for pruning.json (and, with --export, the pruned model).", Required = true };
        var command = new Command("prune", "Choose the experts to prune for a language from a profiling run (pruning.json); --export writes a smaller checkpoint.")
        {
            model, run, language, rate, strategy, seed, export, output,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var modelDirectory = ModelOption.Folder(parse, model);
            var (profiled, partition) = await ExpertsWorkflows.OpenRunOfModelAsync(modelDirectory, parse.GetValue(run)!, cancellationToken);
            var plan = ExpertPruning.Plan(profiled.Profile, parse.GetValue(language)!, parse.GetValue(rate), parse.GetValue(strategy)!, parse.GetValue(seed));
            var outDirectory = parse.GetValue(output)!;
            var pruned = string.Create(CultureInfo.InvariantCulture, $"pruned {plan.PrunedCount} of {plan.Layers * plan.Experts} experts ({plan.Strategy}, {plan.Language})");
            if (parse.GetValue(export))
            {
                var (before, after) = ExpertPruning.WritePrunedModel(modelDirectory, outDirectory, partition, plan);
                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{pruned}; FFN neurons {before:N0} → {after:N0}: {Path.GetFullPath(outDirectory)}"));
            }
            else
            {
                Directory.CreateDirectory(outDirectory);
                plan.Save(outDirectory);
                parse.InvocationConfiguration.Output.WriteLine($"{pruned}: {Path.GetFullPath(Path.Combine(outDirectory, ExpertPruningPlan.FileName))}");
            }
            return 0;
        });
        return command;
    }
}
