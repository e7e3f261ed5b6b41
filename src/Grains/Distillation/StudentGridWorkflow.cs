using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;

namespace Babel.Grains.Distillation;

/// <summary>The student grid as a library call (the quickstart, the benchmark): upload, run the job to its end, read every run.</summary>
public static class StudentGridWorkflow
{
    /// <summary>
    /// Uploads the corpus (and any student model folders), runs the grid job to the end (or continues it) and returns its
    /// id and every run's metrics in plan order.
    /// </summary>
    public static async Task<(string JobId, IReadOnlyList<StudentMetrics> Runs)> RunAsync(JobClient jobs, StudentCorpus corpus, StudentOptions baseOptions,
        IReadOnlyList<string> settings, IReadOnlyList<string> labels, IReadOnlyList<string> students, IReadOnlyList<long> seeds, IProgress<JobStatus>? progress,
        CancellationToken cancellationToken)
    {
        var parameters = await StudentGridJob.UploadInputsAsync(jobs, corpus, baseOptions, settings, labels, students, seeds, cancellationToken);
        var report = await jobs.RunAsync(jobs.Kinds.Get<StudentGridJob>(), parameters, new JobOptions(LeaseDuration: StudentGridJob.DefaultLease), progress, cancellationToken);
        return (report.Setup!.Job, report.Runs);
    }
}
