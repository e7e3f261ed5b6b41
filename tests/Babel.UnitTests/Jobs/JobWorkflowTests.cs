using System.CommandLine;
using System.Text.Json.Nodes;
using Babel.Client;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Jobs;

/// <summary>
/// The job workflow of every job command, on the perplexity job: <c>--no-wait</c>, <c>watch</c>, <c>logs</c>,
/// <c>result</c>, <c>status --format json</c>, and the exit code of each class of outcome.
/// </summary>
public class JobWorkflowTests
{
    private static string[] Perplexity(string model, string corpus, string store, params string[] more) =>
        ["perplexity", "--model", model, "--corpus", corpus, "--split", "all", "--documents-per-shard", "2", "--store", store, .. more];

    [Fact]
    public void No_wait_then_watch_then_result_writes_the_bytes_a_waiting_run_writes()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);

        var waited = Run(Perplexity(model, corpus, scratch.Combine("store-a"), "--out", scratch.Combine("a")));
        Assert.True(waited.Code == 0, waited.Error);

        var submitted = Run(Perplexity(model, corpus, scratch.Combine("store-b"), "--no-wait", "--workers", "0"));
        Assert.True(submitted.Code == 0, submitted.Error);
        var jobId = submitted.Output.Trim();
        Assert.Matches("^perplexity-[0-9a-f]{12}$", jobId);
        // Nothing ran yet: the job is submitted with no worker.
        var before = JsonNode.Parse(Run("status", jobId, "--store", scratch.Combine("store-b"), "--format", "json").Output)!;
        Assert.Equal("Running", (string?)before["phase"]);
        Assert.Equal(0, (int)before["done"]!);

        var watched = Run("watch", jobId, "--store", scratch.Combine("store-b"));
        Assert.True(watched.Code == 0, watched.Error);
        Assert.Contains("Succeeded", watched.Output, StringComparison.Ordinal);

        var result = Run("result", jobId, "--store", scratch.Combine("store-b"), "--out", scratch.Combine("b"));
        Assert.True(result.Code == 0, result.Error);
        var file = Modeling.Training.PerplexityReport.FileName;
        Assert.Equal(File.ReadAllBytes(Path.Combine(scratch.Combine("a"), file)), File.ReadAllBytes(Path.Combine(scratch.Combine("b"), file)));
        // The waiting run's printed JSON is the same document.
        var printed = Run(Perplexity(model, corpus, scratch.Combine("store-b"), "--format", "json"));
        Assert.Equal(File.ReadAllText(Path.Combine(scratch.Combine("b"), file)).TrimEnd(), printed.Output.TrimEnd());
    }

    [Fact]
    public void Status_json_lists_jobs_and_logs_show_every_shard_leased_and_completed()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var store = scratch.Combine("store");
        var run = Run(Perplexity(model, corpus, store));
        Assert.True(run.Code == 0, run.Error);

        var list = Run("status", "--store", store, "--format", "json");
        Assert.True(list.Code == 0, list.Error);
        // The perplexity job, and the tokenize job it was planned from.
        var listed = JsonNode.Parse(list.Output)!["jobs"]!.AsArray();
        Assert.Equal(["perplexity", "tokenize"], listed.Select(j => (string)j!["kind"]!).Order(StringComparer.Ordinal));
        var job = Assert.Single(listed, j => (string?)j!["kind"] == "perplexity")!;
        var jobId = (string)job["jobId"]!;
        Assert.Equal("perplexity", (string?)job["kind"]);
        Assert.Equal("Succeeded", (string?)job["phase"]);
        var shards = (int)job["shards"]!;
        // 7 English and 5 French documents, 2 per shard.
        Assert.Equal(4 + 3, shards);

        var one = JsonNode.Parse(Run("status", jobId, "--store", store, "-o", "json").Output)!;
        Assert.Equal(shards, one["shardDetails"]!.AsArray().Count);

        var logs = Run("logs", jobId, "--store", store, "--format", "json");
        Assert.True(logs.Code == 0, logs.Error);
        var events = logs.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => (long)e["sequence"]!));
        foreach (var kind in new[] { "Leased", "Completed" })
        {
            Assert.Equal(shards, events.Where(e => (string?)e["kind"] == kind).Select(e => (string)e["shardId"]!).Distinct().Count());
        }
        Assert.All(events.Where(e => (string?)e["kind"] == "Completed"), e => Assert.True((double)e["seconds"]! > 0));
        var text = Run("logs", jobId, "--store", store, "-f");
        Assert.True(text.Code == 0, text.Error);
        Assert.Equal(events.Count, text.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains(" completed worker=", text.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_command_serves_its_own_job_not_one_that_a_stopped_command_left_running_in_its_store_until_it_is_followed()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var store = scratch.Combine("store");
        // Left running by a command that stopped: submitted first, with no worker.
        var left = Run(Perplexity(model, corpus, store, "--no-wait", "--workers", "0", "--job-id", "a-left-running"));
        Assert.True(left.Code == 0, left.Error);

        var run = Run(Perplexity(model, corpus, store, "--workers", "1", "--job-id", "b-this-command"));
        Assert.True(run.Code == 0, run.Error);

        // Not one shard of the left job was leased by the command's worker (its log has no event at all).
        var logs = Run("logs", "a-left-running", "--store", store, "--format", "json");
        Assert.True(logs.Code == 0, logs.Error);
        Assert.Equal("", logs.Output.Trim());
        Assert.Equal("Running", (string?)JsonNode.Parse(Run("status", "a-left-running", "--store", store, "-o", "json").Output)!["phase"]);

        // Followed, it runs: by watch, and by logs --follow.
        var watched = Run("watch", "a-left-running", "--store", store);
        Assert.True(watched.Code == 0, watched.Error);
        Assert.Contains("Succeeded", watched.Output, StringComparison.Ordinal);
        Assert.True(Run(Perplexity(model, corpus, store, "--no-wait", "--workers", "0", "--job-id", "c-left-running")).Code == 0);
        var followed = Run("logs", "c-left-running", "--follow", "--store", store);
        Assert.True(followed.Code == 0, followed.Error);
        Assert.Contains(" completed worker=", followed.Output, StringComparison.Ordinal);
        Assert.Equal("Succeeded", (string?)JsonNode.Parse(Run("status", "c-left-running", "--store", store, "-o", "json").Output)!["phase"]);
    }

    [Fact]
    public void A_job_whose_input_is_damaged_after_submission_fails_at_once_and_watch_and_result_exit_2_with_its_reason()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var store = scratch.Combine("store");
        var submitted = Run(Perplexity(model, corpus, store, "--no-wait", "--workers", "0"));
        Assert.True(submitted.Code == 0, submitted.Error);
        // The uploaded model is damaged in the store after submission: the first shard that reads it fails the job, without
        // retries (the same bytes would fail again), as an input error.
        foreach (var weights in Directory.EnumerateFiles(Path.Combine(store, "artifacts"), "model.safetensors", SearchOption.AllDirectories))
        {
            File.WriteAllBytes(weights, [1, 2, 3]);
        }
        var watched = Run("watch", submitted.Output.Trim(), "--store", store);
        Assert.Equal(BabelCli.InputErrorExitCode, watched.Code);
        Assert.StartsWith($"error: job {submitted.Output.Trim()} failed: shard ", LastLine(watched.Error), StringComparison.Ordinal);
        Assert.Equal("", watched.Output);

        var result = Run("result", submitted.Output.Trim(), "--store", store, "--out", scratch.Combine("out"));
        Assert.Equal(BabelCli.InputErrorExitCode, result.Code);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Theory]
    [InlineData(new[] { "perplexity", "--modle", "m" }, "usage: babel perplexity [options]")]
    [InlineData(new[] { "status", "../../etc" }, "usage: babel status [options]")]
    [InlineData(new[] { "watch" }, "usage: babel watch [options]")]
    public void A_usage_error_exits_2_with_the_error_and_one_usage_line(string[] args, string usage)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Equal("", output);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("error: ", lines[0], StringComparison.Ordinal);
        Assert.StartsWith(usage, lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void An_input_error_exits_2_with_one_sentence_and_nothing_on_stdout()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var (code, output, error) = Run(Perplexity(model, corpus, scratch.Combine("store"), "--job-id", "../escape"));
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Equal("", output);
        Assert.Equal("error: '../escape' is not a valid job id; use 1–200 letters, digits, '.', '_', '=', '+' or '-', starting with a letter or digit.", error.Trim());

        // A setting the embedded silo's validators refuse is an input error too, not a stack trace.
        (code, output, error) = Run("watch", "some-job", "--store", scratch.Combine("store"), "--workers", "-1");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Equal("", output);
        Assert.Equal("error: Babel:Worker:CpuSlots -1 is negative; set 0 (no CPU workers) or more.", error.Trim());

        (code, output, error) = Run("result", "no-such-job", "--store", scratch.Combine("store"), "--out", scratch.Combine("out"));
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Equal("", output);
        Assert.Equal("error: There is no job 'no-such-job'; 'babel status' lists the jobs.", error.Trim());
    }

    [Fact]
    public async Task Interrupting_a_wait_exits_130_and_says_how_to_follow_the_job()
    {
        using var scratch = new ScratchFolder();
        var (model, corpus) = JobTestInputs.Write(scratch);
        var store = scratch.Combine("store");
        var jobId = Run(Perplexity(model, corpus, store, "--no-wait", "--workers", "0")).Output.Trim();
        var output = new StringWriter();
        var error = new SynchronizedWriter();
        using var interrupt = new CancellationTokenSource();
        // No worker: the wait only ends by the interrupt, sent once the command is following the job.
        var watch = BabelCli.RunAsync(BabelCli.CreateRootCommand(), ["watch", jobId, "--store", store, "--workers", "0"], output, error, interrupt.Token);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!error.Text.Contains($"job {jobId}:", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(50);
        await interrupt.CancelAsync();
        Assert.Equal(BabelCli.InterruptedExitCode, await watch);
        Assert.Contains($"interrupted: job {jobId} was not cancelled", error.Text, StringComparison.Ordinal);
        Assert.Contains($"'babel watch {jobId}'", error.Text, StringComparison.Ordinal);
        // The job is intact: a later watch with a worker finishes it.
        var resumed = Run("watch", jobId, "--store", store);
        Assert.True(resumed.Code == 0, resumed.Error);
    }

    [Fact]
    public async Task A_bug_exits_1_with_one_line_naming_the_log_that_holds_the_stack_trace()
    {
        var root = new RootCommand();
        var broken = new Command("broken");
        broken.SetAction((Func<ParseResult, int>)(_ => throw new InvalidOperationException("an invariant broke")));
        root.Subcommands.Add(broken);
        var error = new StringWriter();
        var code = await BabelCli.RunAsync(root, ["broken"], new StringWriter(), error, CancellationToken.None);
        Assert.Equal(BabelCli.BugExitCode, code);
        var line = Assert.Single(error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var match = System.Text.RegularExpressions.Regex.Match(line, "^error: an internal error \\(InvalidOperationException: an invariant broke\\); the stack trace is in (.+)\\.$");
        Assert.True(match.Success, line);
        var log = File.ReadAllText(match.Groups[1].Value);
        Assert.Contains("System.InvalidOperationException: an invariant broke", log, StringComparison.Ordinal);
        Assert.Contains("   at ", log, StringComparison.Ordinal);
        File.Delete(match.Groups[1].Value);
    }

    private static string LastLine(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];

    /// <summary>A writer the test can read while the command writes from other threads.</summary>
    private sealed class SynchronizedWriter : StringWriter
    {
        private readonly Lock _gate = new();

        public string Text
        {
            get
            {
                lock (_gate) return ToString();
            }
        }

        public override void Write(char value)
        {
            lock (_gate) base.Write(value);
        }

        public override void Write(string? value)
        {
            lock (_gate) base.Write(value);
        }

        public override void WriteLine(string? value)
        {
            lock (_gate) base.WriteLine(value);
        }
    }
}
