using System.CommandLine;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Storage.Artifacts;

namespace Babel.Client.Jobs;

/// <summary>
/// What every job command shares: where the engine runs (<c>--cluster</c>, <c>--store</c>), embedded workers, <c>--job-id</c>
/// and <c>--no-wait</c>; and the one way a command submits its job, waits for it with progress, and gets the result.
/// </summary>
internal sealed class JobCommandOptions
{
    public EngineOptions Engine { get; } = new();

    public Option<int> Workers { get; } = new("--workers") { Description = "CPU workers of the embedded silo.", DefaultValueFactory = _ => 1 };

    public Option<string?> JobId { get; } = new("--job-id") { Description = "Job id; default: derived from the inputs, so rerunning resumes the same job." };

    public Option<bool> NoWait { get; } = new("--no-wait") { Description = "Submit, print the job id on stdout and exit; 'babel watch JOB' follows it, 'babel result JOB' writes its outputs." };

    /// <summary>The embedded silo's workers when <c>--workers</c> is not given (default 1); a data-parallel command wants one per rank.</summary>
    public Func<ParseResult, int>? DefaultWorkers { get; init; }

    /// <summary>The embedded silo's CPU workers: <c>--workers</c>, else <see cref="DefaultWorkers"/>, else 1.</summary>
    public int WorkersOf(ParseResult parse) =>
        parse.GetResult(Workers) is { Implicit: false } || DefaultWorkers is null ? parse.GetValue(Workers) : DefaultWorkers(parse);

    public void AddTo(Command command)
    {
        Engine.AddTo(command);
        command.Options.Add(Workers);
        command.Options.Add(JobId);
        command.Options.Add(NoWait);
    }

    public Task<EngineConnection> OpenAsync(ParseResult parse, CancellationToken cancellationToken) =>
        Engine.OpenAsync(parse, WorkersOf(parse), cancellationToken);

    /// <summary>
    /// Opens the engine, builds the parameters (uploading inputs), and submits the job. With <c>--no-wait</c> it prints the
    /// job id and returns 0; otherwise it follows the job with progress on stderr and hands the assembled result to
    /// <paramref name="finish"/>, whose return value is the exit code.
    /// </summary>
    public Task<int> RunAsync<TParameters, TShard, TResult>(ParseResult parse, Func<JobKindCatalog, JobKind<TParameters, TShard, TResult>> kindOf,
        Func<JobClient, CancellationToken, Task<TParameters>> parameters, Func<TResult, int> finish, CancellationToken cancellationToken, JobOptions? options = null)
        where TParameters : class =>
        RunAsync(parse, kindOf, (jobs, _, ct) => parameters(jobs, ct), finish, cancellationToken, options);

    /// <summary>
    /// <see cref="RunAsync{TParameters, TShard, TResult}(ParseResult, Func{JobKindCatalog, JobKind{TParameters, TShard, TResult}}, Func{JobClient, CancellationToken, Task{TParameters}}, Func{TResult, int}, CancellationToken, JobOptions?)"/>
    /// for a command whose parameters need a planning job first (e.g. the tokenize job of a profile): <paramref name="parameters"/>
    /// also gets, when the engine is embedded and has no worker to run that job (<c>--no-wait</c> or <c>--workers 0</c>), the
    /// embedded store, so this process runs the planning shards itself; null otherwise.
    /// </summary>
    public async Task<int> RunAsync<TParameters, TShard, TResult>(ParseResult parse, Func<JobKindCatalog, JobKind<TParameters, TShard, TResult>> kindOf,
        Func<JobClient, IArtifactStore?, CancellationToken, Task<TParameters>> parameters, Func<TResult, int> finish, CancellationToken cancellationToken, JobOptions? options = null)
        where TParameters : class
    {
        // A bad --job-id is one sentence before any upload or planning job.
        if (parse.GetValue(JobId) is { } jobId) JobIds.Require(jobId);
        // A command that does not wait runs no shard: its worker would lease one and leave with the process, holding it until the lease expires.
        var workers = parse.GetValue(NoWait) ? 0 : WorkersOf(parse);
        await using var connection = await Engine.OpenAsync(parse, workers, cancellationToken);
        var kind = kindOf(connection.Jobs.Kinds);
        var planHere = !connection.IsCluster && workers == 0 ? connection.Store : null;
        var submitted = await connection.Jobs.SubmitAsync(kind, await parameters(connection.Jobs, planHere, cancellationToken),
            (options ?? new JobOptions()) with { JobId = parse.GetValue(JobId) }, cancellationToken);
        if (parse.GetValue(NoWait))
        {
            parse.InvocationConfiguration.Output.WriteLine(submitted.JobId);
            return 0;
        }
        await WaitAsync(connection, submitted, parse.InvocationConfiguration.Error, cancellationToken);
        return finish(await connection.Jobs.AssembleAsync(kind, submitted.JobId, cancellationToken));
    }

    /// <summary>Follows a job to its end with a progress view; on Ctrl-C says what becomes of the job and rethrows.</summary>
    public static async Task<JobStatus> WaitAsync(EngineConnection connection, JobStatus submitted, TextWriter progressWriter, CancellationToken cancellationToken)
    {
        try
        {
            return await JobProgressView.FollowAsync(connection.Jobs, submitted, progressWriter, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            var where = connection.IsCluster
                ? "it keeps running on the cluster"
                : "its state is kept in the store and it goes on when a command with workers opens the store again";
            throw new JobInterruptedException($"interrupted: job {submitted.JobId} was not cancelled; {where}. 'babel watch {submitted.JobId}' follows it, " +
                $"'babel result {submitted.JobId} --out DIR' writes its outputs once done, 'babel cancel {submitted.JobId}' stops it.");
        }
    }
}

/// <summary>The user interrupted a waiting command (exit code 130); the message says what becomes of the job.</summary>
internal sealed class JobInterruptedException(string message) : Exception(message);
