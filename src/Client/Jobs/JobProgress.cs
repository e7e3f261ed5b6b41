using Babel.Contracts;
using Babel.Storage;

namespace Babel.Client.Jobs;

// LEGACY-KIND: the untyped submit-and-wait of commands whose kind is not yet a JobKind<,,>; removed with them.
internal static class JobProgress
{
    public static async Task<JobStatus> RunAsync(EngineConnection connection, string jobId, JobSpec spec, TextWriter progressWriter, CancellationToken cancellationToken)
    {
        var submitted = await connection.Jobs.SubmitAsync(jobId, spec, cancellationToken);
        try
        {
            return await JobCommandOptions.WaitAsync(connection, submitted, progressWriter, cancellationToken);
        }
        catch (Grains.Engine.JobFailedException e)
        {
            throw new UserInputException(e.Message, e);
        }
    }
}
