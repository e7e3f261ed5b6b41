using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Contracts;
using Babel.Silo;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel status [JOB]</c>, <c>babel cancel JOB</c> and <c>babel silo</c>.</summary>
internal static class JobCommands
{
    private static readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
    };

    public static Command Status()
    {
        var engine = new EngineOptions();
        var job = new Argument<string?>("job") { Description = "Job id; without it, every job is listed.", Arity = ArgumentArity.ZeroOrOne };
        var output = new Option<string>("--output") { Description = "table or json (json: one job's status with its shards).", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var command = new Command("status", "Show jobs, or one job with its shards.") { job, output };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var connection = await engine.OpenAsync(parse, workers: 0, cancellationToken);
            var console = CommandConsole.For(parse.InvocationConfiguration.Output);
            var id = parse.GetValue(job);
            if (id is null)
            {
                var table = new Table().AddColumns("job", "kind", "phase", "shards done", "running", "failed", "items/s", "submitted");
                foreach (var jobId in await connection.Grains.GetGrain<IJobRegistryGrain>(0).ListAsync())
                {
                    var s = await connection.Grains.GetGrain<IJobGrain>(jobId).GetStatusAsync(includeShards: false);
                    table.AddRow(Markup.Escape(s.JobId), Markup.Escape(s.Kind), s.Phase.ToString(), $"{s.Done}/{s.Shards}", s.Leased.ToString(CultureInfo.InvariantCulture),
                        s.Failed.ToString(CultureInfo.InvariantCulture), s.ItemsPerSecond.ToString("F1", CultureInfo.InvariantCulture), s.Submitted.ToString("u", CultureInfo.InvariantCulture));
                }
                console.Write(table);
                return 0;
            }
            var status = await Find(connection, id).GetStatusAsync(includeShards: true);
            if (parse.GetValue(output) == "json")
            {
                parse.InvocationConfiguration.Output.WriteLine(JsonSerializer.Serialize(status, _json));
                return 0;
            }
            console.MarkupLineInterpolated($"job {status.JobId} ({status.Kind}): {status.Phase}, {status.Done}/{status.Shards} shards done, {status.Leased} running, {status.Failed} failed, {status.ItemsDone}/{status.Items} items, {status.ItemsPerSecond:F1} items/s");
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
        var job = new Argument<string>("job") { Description = "Job id." };
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

    private static IJobGrain Find(EngineConnection connection, string jobId) => connection.Grains.GetGrain<IJobGrain>(jobId);
}
