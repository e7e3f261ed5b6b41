using Babel.Grains.Engine;
using Babel.Modeling.Text2Tree;

namespace Babel.Grains.Text2Tree;

/// <summary>The grid half of <c>babel bench text2tree</c>: the wall time of a grid of short finetune runs on the engine it is given.</summary>
public static class Text2TreeGridBenchmark
{
    /// <summary>
    /// Runs <paramref name="runs"/> finetune seeds of <paramref name="steps"/> steps each as one grid job and returns its wall
    /// time from submission to end, as the job grain recorded them.
    /// </summary>
    public static async Task<double> WallSecondsAsync(JobClient jobs, string dataDirectory, int runs, int steps, CancellationToken cancellationToken)
    {
        var options = Text2TreeBenchmark.Options(Text2TreeMethods.Finetune, steps);
        var parameters = new Text2TreeGridParameters(await jobs.UploadFolderAsync(dataDirectory, "datasets", cancellationToken), options,
            [Text2TreeMethods.Finetune], [.. Enumerable.Range(1, runs).Select(s => (long)s)], [options.Lambda], [options.Tau]);
        var submitted = await jobs.SubmitAsync(jobs.Kinds.Get<Text2TreeGridJob>(), parameters, Text2TreeGridJob.SubmitOptions, cancellationToken);
        var status = await jobs.WaitAsync(submitted.JobId, progress: null, cancellationToken);
        return ((status.Finished ?? status.Submitted) - status.Submitted).TotalSeconds;
    }
}
