using Babel.Contracts;

namespace Babel.Grains.Engine;

/// <summary>
/// A job's header, the only grain state it has: written at submission, once per activation of a running job (the epoch that
/// names its journal segments and fences an older activation's header writes) and when the job ends. Its size does not grow
/// with the job: the plan is one object in the job journal store, verified by <see cref="PlanSha256"/>, and every shard
/// event is a line of the journal.
/// </summary>
[GenerateSerializer]
public sealed class JobRecord
{
    [Id(0)] public JobSpec? Spec { get; set; }
    [Id(3)] public JobPhase Phase { get; set; }
    [Id(4)] public DateTimeOffset Submitted { get; set; }
    [Id(5)] public DateTimeOffset? Finished { get; set; }
    [Id(6)] public string? Error { get; set; }
    [Id(12)] public int Shards { get; set; }
    [Id(13)] public string? PlanSha256 { get; set; }
    [Id(14)] public int Epoch { get; set; }
}
