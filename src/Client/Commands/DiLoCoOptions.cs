using System.CommandLine;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>
/// <c>--sync-every</c>, <c>--outer-lr</c> and <c>--outer-momentum</c> of every data-parallel training command: DiLoCo's
/// local steps between synchronisations and its outer Nesterov optimizer (defaults: the paper's).
/// </summary>
internal sealed class DiLoCoOptions
{
    private static readonly PretrainingOptions _defaults = new();

    public Option<int> SyncEvery { get; } = new("--sync-every")
    {
        Description = "With --data-parallel: AdamW steps each rank takes on its own micro-batches between synchronisations; 1 sums gradients every step (exact), H > 1 is DiLoCo (weights averaged every H steps through an outer Nesterov step; H times fewer exchanges).",
        DefaultValueFactory = _ => _defaults.SyncEvery,
    };

    public Option<double> OuterLearningRate { get; } = new("--outer-lr") { Description = "With --sync-every H > 1: DiLoCo's outer learning rate.", DefaultValueFactory = _ => _defaults.OuterLearningRate };

    public Option<double> OuterMomentum { get; } = new("--outer-momentum") { Description = "With --sync-every H > 1: DiLoCo's outer Nesterov momentum.", DefaultValueFactory = _ => _defaults.OuterMomentum };

    public void AddTo(Command command)
    {
        command.Options.Add(SyncEvery);
        command.Options.Add(OuterLearningRate);
        command.Options.Add(OuterMomentum);
    }

    /// <summary>The values given; local steps need several ranks.</summary>
    public (int SyncEvery, double OuterLearningRate, double OuterMomentum) Read(ParseResult parse, int ranks)
    {
        var syncEvery = parse.GetValue(SyncEvery);
        if (syncEvery != 1 && ranks < 2) throw new UserInputException("--sync-every needs --data-parallel with at least 2 ranks.");
        return (syncEvery, parse.GetValue(OuterLearningRate), parse.GetValue(OuterMomentum));
    }
}
