namespace Babel.Grains.Engine;

/// <summary>The compute devices a silo offers to jobs and how their workers pull shards, bound from <c>Babel:Worker</c>.</summary>
public sealed class WorkerOptions
{
    public const string Section = "Babel:Worker";

    /// <summary>
    /// Device workers to run when no CUDA device is present (<c>cpu:0</c> … <c>cpu:{CpuSlots-1}</c>); 0 runs none, for a
    /// silo that only coordinates. Default 1.
    /// </summary>
    public int CpuSlots { get; set; } = 1;

    /// <summary>
    /// Torch threads of each worker. Default 1: small ops slow down sharply when two torch threads compete with another
    /// process for the cores.
    /// </summary>
    public int ThreadsPerSlot { get; set; } = 1;

    /// <summary>Comma-separated devices that replace detection, e.g. <c>cuda:0,cuda:1</c> or <c>cpu:0,cpu:1</c>; empty (default) detects.</summary>
    public string? Devices { get; set; }

    /// <summary>Local folder where models and corpora from the artifact store are materialised. Default: the system temp folder's <c>babel-artifacts</c>.</summary>
    public string CacheFolder { get; set; } = Path.Combine(Path.GetTempPath(), "babel-artifacts");

    /// <summary>Longest wait between polls when no job has work (each poll is one call to the job registry). Default 250 ms.</summary>
    public TimeSpan MaxIdleDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Timeout of one call to a job grain; calls are retried, so a dead silo costs a worker at most about this much. Default 5 s.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Comma-separated hosts an openai teacher of a distillation job may be, besides loopback (always allowed); a job
    /// naming another host fails. Default: none.
    /// </summary>
    public string? TeacherHosts { get; set; }

    /// <summary>
    /// Comma-separated environment variables a distillation job may name for its teacher key (<c>--api-key-env</c>),
    /// besides the names starting with <c>BABEL_TEACHER_</c>; a job naming another variable fails. Default: none.
    /// </summary>
    public string? TeacherKeyVariables { get; set; }

    /// <summary>Allow plain http (not only https) to the <see cref="TeacherHosts"/>; loopback may always use http. Default false.</summary>
    public bool TeacherPlainHttp { get; set; }
}
