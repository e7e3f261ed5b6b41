using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Distillation;
using Babel.Silo;
using Babel.Silo.Serving;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary>
/// <c>babel bench distill</c>: (1) the local-teacher distillation job on the embedded engine against the same generation
/// batches run plainly (no engine, cache or files) on the same model, one torch thread each; (2) the openai teacher's
/// throughput against <c>babel serve</c> at several concurrencies.
/// </summary>
internal static class DistillBenchmark
{
    public static Command Create()
    {
        var model = ModelOption.CreateOptional("Teacher model folder with tokenizer.json; default: the --preset model with random weights and a tokenizer trained on UDHR.");
        var preset = new Option<string>("--preset") { Description = "Size of the default model: tiny or small.", DefaultValueFactory = _ => "small" };
        var questions = new Option<int>("--questions") { Description = "Synthetic math questions.", DefaultValueFactory = _ => 16 };
        var cots = new Option<int>("--cots") { Description = "Chains of thought per question.", DefaultValueFactory = _ => 4 };
        var evals = new Option<int>("--evals") { Description = "Self-evaluations per chain of thought.", DefaultValueFactory = _ => 1 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens per completion.", DefaultValueFactory = _ => 32 };
        var batch = new Option<int>("--batch-size") { Description = "Rows per batched generation.", DefaultValueFactory = _ => 8 };
        var requests = new Option<int>("--requests") { Description = "HTTP requests per concurrency level.", DefaultValueFactory = _ => 64 };
        var concurrency = new Option<string>("--concurrency") { Description = "Comma-separated HTTP concurrency levels.", DefaultValueFactory = _ => "1,8,32" };
        var work = new Option<string>("--work") { Description = "Scratch folder.", DefaultValueFactory = _ => Path.Combine(".babel", "bench-distill") };
        var command = new Command("distill", "Local-teacher distillation job against plain batched generation (job overhead), and HTTP teacher throughput against 'babel serve' at concurrency 1, 8, 32.")
        {
            model, preset, questions, cots, evals, maxNew, batch, requests, concurrency, work,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var root = Path.GetFullPath(parse.GetValue(work)!);
            var modelDirectory = ModelOption.OptionalFolder(parse, model) ?? ClusterBenchmark.PrepareInputs(root, null, null, parse.GetValue(preset)!).Model;
            var dataset = Path.Combine(root, "math.jsonl");
            File.WriteAllLines(dataset, Enumerable.Range(1, parse.GetValue(questions)).Select(i =>
                $$"""{"id": "b{{i:D4}}", "question": "A shop sells {{i}} boxes of {{i + 3}} pencils each. How many pencils does it sell?", "answer": "{{i * (i + 3)}}"}"""));
            var writer = parse.InvocationConfiguration.Output;
            await MeasureJobOverheadAsync(modelDirectory, dataset, root, parse.GetValue(cots), parse.GetValue(evals), parse.GetValue(maxNew), parse.GetValue(batch), writer, cancellationToken);
            var levels = parse.GetValue(concurrency)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
            await MeasureHttpAsync(modelDirectory, root, parse.GetValue(requests), levels, parse.GetValue(maxNew), writer, cancellationToken);
            return 0;
        });
        return command;
    }

    private static async Task MeasureJobOverheadAsync(string modelDirectory, string dataset, string root, int cots, int evals, int maxNew, int batch,
        TextWriter writer, CancellationToken cancellationToken)
    {
        const int Rounds = 2;
        var store = Path.Combine(root, "store-" + Guid.NewGuid().ToString("N")[..8]);
        var template = new DistillJobParameters("local", "", "", "jsonl", "train", "math",
            Cots: cots, Evaluations: evals, MaxNewTokens: maxNew, BatchSize: batch, Seed: 1, QuestionsPerShard: 4);
        var questions = File.ReadAllLines(dataset).Length;
        double jobSeconds = 0, shardSeconds = 0, plainSeconds = 0;
        long jobTokens = 0, plainTokens = 0, calls = 0;
        await using (var connection = await EngineConnection.OpenAsync(cluster: false, store, workers: 1, cancellationToken))
        {
            var kind = connection.Jobs.Kinds.Get<DistillJob>();
            async Task<DistillationFolder> RunAsync(DistillJobParameters p, string? jobId)
            {
                var parameters = await kind.PrepareAsync(connection.Jobs, p, dataset, modelDirectory, cluster: false, cancellationToken);
                return await connection.Jobs.RunAsync(kind, parameters, new JobOptions(JobId: jobId), progress: null, cancellationToken);
            }
            // A first, smaller job with another seed uploads the model and loads it into the worker; the measured jobs then
            // show the engine's steady-state cost (leases, cache writes, shard results, output files), not one-time setup.
            (await RunAsync(template with { Seed = 1000, Limit = 4 }, null)).Save(Path.Combine(root, "warm-up"));
            // Job and plain runs alternate (each plain run repeats the batches of the job before it), so load on a shared machine hits both alike.
            for (var round = 0; round < Rounds; round++)
            {
                var outFolder = Path.Combine(root, $"out-{round}");
                var jobId = $"bench-distill-{Guid.NewGuid():N}";
                var stopwatch = Stopwatch.StartNew();
                var folder = await RunAsync(template with { Seed = round + 1 }, jobId);
                folder.Save(outFolder);
                jobSeconds += stopwatch.Elapsed.TotalSeconds;
                shardSeconds += (await connection.Grains.GetGrain<Contracts.IJobGrain>(jobId).GetStatusAsync(includeShards: false)).ComputeSeconds;
                jobTokens += folder.Manifest.TokensOut ?? 0;
                var plain = await DistillationBenchmarks.PlainGenerationAsync(modelDirectory, outFolder, batch, cancellationToken);
                (calls, plainTokens, plainSeconds) = (calls + plain.Calls, plainTokens + plain.Tokens, plainSeconds + plain.Seconds);
            }
        }
        Directory.Delete(store, recursive: true);
        var table = new Table().AddColumns("run", "teacher calls", "completion tokens", "wall", "tokens/s");
        string Row(double seconds) => $"{seconds:F2} s";
        table.AddRow("plain batched generation", calls.ToString(CultureInfo.InvariantCulture), plainTokens.ToString(CultureInfo.InvariantCulture),
            Row(plainSeconds), (plainTokens / plainSeconds).ToString("F1", CultureInfo.InvariantCulture));
        table.AddRow("distill job (embedded, 1 worker)", calls.ToString(CultureInfo.InvariantCulture), jobTokens.ToString(CultureInfo.InvariantCulture),
            Row(jobSeconds), (jobTokens / jobSeconds).ToString("F1", CultureInfo.InvariantCulture));
        table.AddRow("  of which inside shards", "", "", Row(shardSeconds), "");
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"local teacher {modelDirectory}: {questions} questions × {cots} CoTs × {evals} evaluations, batch {batch}, {maxNew} new tokens at most, 1 torch thread, {Rounds} rounds"));
        AnsiConsole.Write(table);
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"job overhead: {jobSeconds / plainSeconds - 1:P1} (inside shards: {shardSeconds / plainSeconds - 1:P1}; engine start and model upload excluded)"));
    }

    private static async Task MeasureHttpAsync(string modelDirectory, string root, int requests, int[] levels, int maxNew, TextWriter writer, CancellationToken cancellationToken)
    {
        var url = $"http://127.0.0.1:{LoopbackPorts.Free()}";
        await using var app = await ServeCommand.StartAsync(modelDirectory, url, "bench", 32, Path.Combine(root, "serve-store"), cancellationToken);
        var served = app.Services.GetRequiredService<ServedModel>();
        var table = new Table().AddColumns("concurrency", "requests", "wall", "requests/s", "completion tokens/s", "mean rows per batch");
        foreach (var level in levels)
        {
            using var teacher = new OpenAiTeacher(new OpenAiTeacherOptions { BaseUrl = url + "/v1", Model = "bench", Api = "completions", Concurrency = level, MaxAttempts = 1 });
            var batch = Enumerable.Range(0, requests)
                .Select(i => new TeacherRequest($"Q: A shop sells {i} boxes of pencils. How many pencils?\nA:", 0.7, 1.0, maxNew, 1000 + i, [])).ToList();
            var (batchesBefore, rowsBefore) = (served.Batches, served.Rows);
            var stopwatch = Stopwatch.StartNew();
            var results = await teacher.CompleteAsync(batch, cancellationToken);
            var seconds = stopwatch.Elapsed.TotalSeconds;
            var failed = results.Count(r => r.Completion is null);
            if (failed > 0) throw new InvalidOperationException($"{failed} benchmark requests failed: {results.First(r => r.Completion is null).Error}");
            var tokens = results.Sum(r => r.Completion!.CompletionTokens);
            var meanRows = (double)(served.Rows - rowsBefore) / Math.Max(1, served.Batches - batchesBefore);
            table.AddRow(level.ToString(CultureInfo.InvariantCulture), requests.ToString(CultureInfo.InvariantCulture), $"{seconds:F2} s",
                (requests / seconds).ToString("F1", CultureInfo.InvariantCulture), (tokens / seconds).ToString("F0", CultureInfo.InvariantCulture), meanRows.ToString("F1", CultureInfo.InvariantCulture));
        }
        writer.WriteLine($"openai teacher against 'babel serve' ({url}, --max-batch 32), /v1/completions, {maxNew} new tokens at most");
        AnsiConsole.Write(table);
    }
}
