using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Client.Jobs;
using Babel.Contracts;
using Babel.Grains.Engine;
using Babel.Silo;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel status [JOB]</c>, <c>babel cancel JOB</c> and <c>babel silo</c>.</summary>
internal static class JobCommands
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
    };

    public static Command Status()
    {
        var engine = new EngineOptions();
        var job = JobArgument("Job id; without it, every job is listed.", ArgumentArity.ZeroOrOne);
        var format = FormatOption.Create("table", FormatOption.Json);
        var command = new Command("status", "Show jobs, or one job with its shards.") { job, format };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var connection = await engine.OpenAsync(parse, workers: 0, cancellationToken);
            var json = parse.GetValue(format) == FormatOption.Json;
            var writer = parse.InvocationConfiguration.Output;
            var console = CommandConsole.For(writer);
            if (parse.GetValue(job) is not { } id)
            {
                var jobs = new List<JobStatus>();
                foreach (var jobId in await connection.Grains.GetGrain<IJobRegistryGrain>(0).ListAsync())
                {
                    jobs.Add(await connection.Grains.GetGrain<IJobGrain>(jobId).GetStatusAsync(includeShards: false));
                }
                if (json)
                {
                    writer.WriteLine(JsonSerializer.Serialize(new { jobs }, Json));
                    return 0;
                }
                var table = new Table().AddColumns("job", "kind", "phase", "shards done", "running", "failed", "items/s", "submitted");
                foreach (var s in jobs)
                {
                    table.AddRow(Markup.Escape(s.JobId), Markup.Escape(s.Kind), s.Phase.ToString(), $"{s.Done}/{s.Shards}", s.Leased.ToString(CultureInfo.InvariantCulture),
                        s.Failed.ToString(CultureInfo.InvariantCulture), s.ItemsPerSecond.ToString("F1", CultureInfo.InvariantCulture), s.Submitted.ToString("u", CultureInfo.InvariantCulture));
                }
                console.Write(table);
                return 0;
            }
            var status = await Find(connection, id).GetStatusAsync(includeShards: true);
            if (json)
            {
                writer.WriteLine(JsonSerializer.Serialize(status, Json));
                return 0;
            }
            console.MarkupLineInterpolated($"job {status.JobId} ({status.Kind}): {status.Phase}, {JobProgressView.Line(status)}, {status.ItemsDone}/{status.Items} items");
            if (status.Error is not null) console.MarkupLineInterpolated($"[red]{status.Error}[/]");
            var shards = new Table().AddColumns("shard", "phase", "attempts", "items", "worker", "error");
            foreach (var shard in status.ShardDetails)
            {
                shards.AddRow(Markup.Escape(shard.ShardId), shard.Phase.ToString(), shard.Attempts.ToString(CultureInfo.InvariantCulture), shard.Items.ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(shard.Worker ?? ""), Markup.Escape(shard.Error ?? ""));
            }
            console.Write(shards);
            return 0;
        });
        return command;
    }

    public static Command Cancel()
    {
        var engine = new EngineOptions();
        var job = JobArgument("Job id.");
        var command = new Command("cancel", "Cancel a running job; finished shards keep their results.") { job };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var connection = await engine.OpenAsync(parse, workers: 0, cancellationToken);
            var grain = Find(connection, parse.GetValue(job)!);
            await grain.CancelAsync();
            var status = await grain.GetStatusAsync(includeShards: false);
            parse.InvocationConfiguration.Output.WriteLine($"job {status.JobId}: {status.Phase}");
            return 0;
        });
        return command;
    }

    public static Command Silo()
    {
        var command = new Command("silo", "Run a silo process (the same as the Babel.Silo executable); configure it with Babel__Cluster__*, Babel__Worker__* and BABEL_STORAGE_CONNECTION_STRING.");
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((parse, cancellationToken) => SiloProcess.RunAsync([.. parse.UnmatchedTokens], cancellationToken));
        return command;
    }

    /// <summary>The <c>JOB</c> argument, checked to be a valid job id at parse time.</summary>
    public static Argument<string?> JobArgument(string description, ArgumentArity? arity = null)
    {
        var argument = new Argument<string?>("job") { Description = description, Arity = arity ?? ArgumentArity.ExactlyOne };
        argument.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } id && !JobIds.IsValid(id))
            {
                result.AddError($"'{id}' is not a valid job id; 'babel status' lists the jobs.");
            }
        });
        return argument;
    }

    public static IJobGrain Find(EngineConnection connection, string jobId) => connection.Grains.GetGrain<IJobGrain>(JobIds.Require(jobId));
}
