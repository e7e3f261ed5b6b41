using System.CommandLine;
using Babel.Client.Jobs;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Modeling.Training;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary>
/// <c>--data-parallel</c>, <c>--micro-batches</c>, <c>--lease-seconds</c> and DiLoCo's <c>--sync-every</c>,
/// <c>--outer-lr</c>, <c>--outer-momentum</c> of every data-parallel training command (pretrain, finetune, distill train):
/// declared and checked in one place.
/// </summary>
internal sealed class DataParallelOptions
{
    /// <summary>Default lease of a data-parallel rank: a silent rank is dropped after half of it.</summary>
    public const double DefaultLeaseSeconds = 60;

    /// <param name="inProcess">What one rank does, e.g. "trains in this process".</param>
    public DataParallelOptions(string inProcess)
    {
        Ranks = new("--data-parallel")
        {
            Description = $"Ranks of a data-parallel job (one device worker each, gradients summed every step, or weights every --sync-every steps); 1 {inProcess}.",
            DefaultValueFactory = _ => 1,
        };
    }

    public Option<int> Ranks { get; }

    public Option<int?> MicroBatches { get; } = new("--micro-batches")
    {
        Description = "Micro-batches each global batch is cut into (default: the ranks); a group that lost ranks accumulates them, so the global batch never changes.",
    };

    public Option<double> LeaseSeconds { get; } = new("--lease-seconds")
    {
        Description = "With --data-parallel: a rank's lease; a step waits at most half of it for a silent rank before the group goes on without it.",
        DefaultValueFactory = _ => DefaultLeaseSeconds,
    };

    public DiLoCoOptions DiLoCo { get; } = new();

    /// <summary>The job options' embedded workers: one per rank.</summary>
    public JobCommandOptions JobOptions() => new() { DefaultWorkers = parse => parse.GetValue(Ranks) };

    public void AddTo(Command command)
    {
        command.Options.Add(Ranks);
        command.Options.Add(MicroBatches);
        command.Options.Add(LeaseSeconds);
        DiLoCo.AddTo(command);
    }

    /// <summary>The data-parallel run the options ask for, null for a run in this process; bad values are one clear sentence.</summary>
    public DataParallelRun? Read(ParseResult parse)
    {
        var ranks = parse.GetValue(Ranks);
        if (ranks < 1) throw new UserInputException($"--data-parallel must be at least 1 (got {ranks}).");
        var (syncEvery, _, _) = DiLoCo.Read(parse, ranks);
        if (ranks == 1) return null;
        var lease = parse.GetValue(LeaseSeconds);
        if (!(lease >= 2)) throw new UserInputException($"--lease-seconds must be at least 2 (got {lease}).");
        return new DataParallelRun(ranks, parse.GetValue(MicroBatches) ?? ranks, lease, syncEvery);
    }

    /// <summary><paramref name="options"/> with DiLoCo's values.</summary>
    public PretrainingOptions Apply(ParseResult parse, PretrainingOptions options)
    {
        var (syncEvery, outerLearningRate, outerMomentum) = DiLoCo.Read(parse, parse.GetValue(Ranks));
        return options with { SyncEvery = syncEvery, OuterLearningRate = outerLearningRate, OuterMomentum = outerMomentum };
    }

    /// <summary><paramref name="options"/> with DiLoCo's values.</summary>
    public StudentOptions Apply(ParseResult parse, StudentOptions options)
    {
        var (syncEvery, outerLearningRate, outerMomentum) = DiLoCo.Read(parse, parse.GetValue(Ranks));
        return options with { SyncEvery = syncEvery, OuterLearningRate = outerLearningRate, OuterMomentum = outerMomentum };
    }
}

/// <summary>A data-parallel run as the options give it.</summary>
internal sealed record DataParallelRun(int Ranks, int MicroBatches, double LeaseSeconds, int SyncEvery)
{
    /// <summary>How long a step waits for a silent rank: half its lease.</summary>
    public TimeSpan StepTimeout => TimeSpan.FromSeconds(LeaseSeconds / 2);

    public JobOptions JobOptions => new(LeaseDuration: TimeSpan.FromSeconds(LeaseSeconds));
}
