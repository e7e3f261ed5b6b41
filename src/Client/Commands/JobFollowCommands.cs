using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Babel.Client.Jobs;
using Babel.Contracts;

namespace Babel.Client.Commands;

/// <summary><c>babel watch JOB</c>, <c>babel logs JOB [-f]</c> and <c>babel result JOB --out DIR</c>: the rest of a job submitted with <c>--no-wait</c>.</summary>
internal static class JobFollowCommands
{
    private static readonly JsonSerializerOptions _line = new(JobCommands.Json) { WriteIndented = false };

    public static Command Watch()
    {
        var options = new JobCommandOptions();
        var job = JobCommands.JobArgument("Job id.");
        var command = new Command("watch", "Follow a job to its end, with the exit code the submitting command would have had (embedded mode runs it meanwhile).") { job };
        options.Engine.AddTo(command);
        command.Options.Add(options.Workers);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var connection = await options.OpenAsync(parse, cancellationToken);
            var status = await JobCommands.Find(connection, parse.GetValue(job)!).GetStatusAsync(includeShards: false);
            status = await JobCommandOptions.WaitAsync(connection, status, parse.InvocationConfiguration.Error, cancellationToken);
            // The result's own checks (e.g. distill's --max-failure-rate) decide the exit code, as for the waiting command.
            await connection.Jobs.VerifyAsync(status.JobId, cancellationToken);
            parse.InvocationConfiguration.Output.WriteLine($"job {status.JobId}: {status.Phase}");
            return 0;
        });
        return command;
    }

    public static Command Logs()
    {
        var options = new JobCommandOptions();
        var job = JobCommands.JobArgument("Job id.");
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing events until the job ends (embedded mode runs it meanwhile)." };
        var format = FormatOption.Create("text", FormatOption.Json);
        var command = new Command("logs", "Print a job's shard events: leased, completed, failed, lease expired (worker, attempt, duration, error).") { job, follow, format };
        options.Engine.AddTo(command);
        command.Options.Add(options.Workers);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var following = parse.GetValue(follow);
            await using var connection = await options.Engine.OpenAsync(parse, following ? parse.GetValue(options.Workers) : 0, cancellationToken);
            var grain = JobCommands.Find(connection, parse.GetValue(job)!);
            if (following) connection.Jobs.Follow(grain.GetPrimaryKeyString());
            var writer = parse.InvocationConfiguration.Output;
            var json = parse.GetValue(format) == FormatOption.Json;
            long seen = 0;
            while (true)
            {
                // Read the status first: events recorded before the job ended are then all readable below.
                var finished = (await grain.GetStatusAsync(includeShards: false)).IsFinished;
                IReadOnlyList<ShardEvent> events;
                do
                {
                    events = await grain.GetEventsAsync(seen, 1000);
                    foreach (var e in events) writer.WriteLine(json ? JsonSerializer.Serialize(e, _line) : Line(e));
                    if (events.Count > 0) seen = events[^1].Sequence;
                }
                while (events.Count > 0);
                if (!following || finished) return 0;
                await Task.Delay(Grains.Engine.JobClient.PollInterval, cancellationToken);
            }
        });
        return command;
    }

    /// <summary>"2026-12-06T20:01:02.123Z eng-0001 completed worker=silo/cpu:0 attempt=1 seconds=1.250".</summary>
    public static string Line(ShardEvent e)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{e.Time.UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffZ} {e.ShardId} {JsonNamingPolicy.KebabCaseLower.ConvertName(e.Kind.ToString())} worker={e.Worker ?? "-"} attempt={e.Attempt}");
        if (e.Seconds is { } seconds) line += string.Create(CultureInfo.InvariantCulture, $" seconds={seconds:F3}");
        if (e.Error is { } error) line += $" error={error.ReplaceLineEndings(" ")}";
        return line;
    }

    public static Command Result()
    {
        var engine = new EngineOptions();
        var job = JobCommands.JobArgument("Job id of a finished job.");
        var output = new Option<string>("--out") { Description = "Folder to write the job's outputs into, as the command that submitted it would have.", Required = true };
        var command = new Command("result", "Write the outputs of a finished job, exactly as the waiting command would have.") { job, output };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var connection = await engine.OpenAsync(parse, workers: 0, cancellationToken);
            var summary = await connection.Jobs.SaveResultAsync(parse.GetValue(job)!, parse.GetValue(output)!, cancellationToken);
            parse.InvocationConfiguration.Output.WriteLine(summary);
            return 0;
        });
        return command;
    }
}
