using System.Globalization;
using Babel.Contracts;
using Babel.Grains.Engine;
using Spectre.Console;

namespace Babel.Client.Jobs;

/// <summary>
/// Shows a job's progress while a command waits: a live bar (shards, items/s, ETA) on a terminal, and a plain line per
/// change of the shards done otherwise (a pipe or a log file).
/// </summary>
internal static class JobProgressView
{
    public static async Task<JobStatus> FollowAsync(JobClient jobs, JobStatus submitted, TextWriter writer, CancellationToken cancellationToken)
    {
        var console = CommandConsole.For(writer);
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"job {submitted.JobId}: {submitted.Shards} shards ({submitted.Done} already done); 'babel status {submitted.JobId}' shows it"));
        if (!console.Profile.Capabilities.Interactive)
        {
            var lastDone = submitted.Done;
            return await jobs.WaitAsync(submitted.JobId, new Inline(status =>
            {
                if (status.Done == lastDone) return;
                lastDone = status.Done;
                console.WriteLine(Line(status));
            }), cancellationToken);
        }
        JobStatus? final = null;
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var bar = context.AddTask(Markup.Escape(submitted.JobId), maxValue: Math.Max(1, submitted.Shards));
                final = await jobs.WaitAsync(submitted.JobId, new Inline(status =>
                {
                    bar.Value = status.Done;
                    bar.Description = Markup.Escape(Line(status));
                }), cancellationToken);
                bar.Value = bar.MaxValue;
            });
        return final!;
    }

    /// <summary>A plain line on <paramref name="console"/> each time a job's count of done shards changes: progress of a library workflow's jobs.</summary>
    public static IProgress<JobStatus> Lines(IAnsiConsole console)
    {
        var last = (Job: "", Done: -1);
        return new Inline(status =>
        {
            if ((status.JobId, status.Done) == last) return;
            last = (status.JobId, status.Done);
            console.WriteLine($"job {status.JobId}: {Line(status)}");
        });
    }

    /// <summary>"12/40 shards done, 2 running, 35.1 items/s, ETA 0:01:20".</summary>
    public static string Line(JobStatus status)
    {
        var remaining = status.ItemsPerSecond > 0 && status.Items > status.ItemsDone
            ? TimeSpan.FromSeconds((status.Items - status.ItemsDone) / status.ItemsPerSecond).ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
            : "-";
        return string.Create(CultureInfo.InvariantCulture,
            $"{status.Done}/{status.Shards} shards done, {status.Leased} running, {status.ItemsPerSecond:F1} items/s, ETA {remaining}");
    }

    private sealed class Inline(Action<JobStatus> report) : IProgress<JobStatus>
    {
        public void Report(JobStatus value) => report(value);
    }
}
