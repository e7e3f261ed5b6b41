using System.Text.Json.Nodes;
using Xunit;

namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// A corpus and a model made with the CLI as a user would (UDHR in six languages, a tiny Llama after one training step:
/// deterministic, not good), and the reference result of <c>babel perplexity</c> on the embedded single-process engine.
/// With <see cref="Arguments"/> (every document, one per shard) the job has 186 shards and takes several seconds on
/// two silos, so a kill or an outage lands mid-job.
/// </summary>
public sealed class PerplexityInputs : IAsyncLifetime
{
    public const string Languages = "eng,fra,deu,spa,por,ita";
    public const int Shards = 6 * 31;
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromMinutes(3);

    public string Folder { get; } = Directory.CreateTempSubdirectory("babel-cluster-inputs-").FullName;
    public string Corpus => Path.Combine(Folder, "udhr");
    public string Model => Path.Combine(Folder, "model");

    /// <summary>The embedded run's <c>--format json</c>.</summary>
    public JsonNode Reference { get; private set; } = null!;

    /// <summary>The <c>babel perplexity</c> arguments every test runs (plus <c>--cluster</c>, <c>--job-id</c> or <c>--store</c>).</summary>
    public string[] Arguments =>
        ["perplexity", "--model", Model, "--corpus", Corpus, "--split", "all", "--documents-per-shard", "1", "--format", "json"];

    public async Task InitializeAsync()
    {
        var cli = BabelCli.Standalone(Folder);
        Check(await cli.RunAsync(_commandTimeout, "data", "udhr", "--out", Corpus, "--languages", Languages));
        Check(await cli.RunAsync(_commandTimeout, "pretrain", "--corpus", Corpus, "--out", Model, "--steps", "1", "--batch-size", "2", "--sequence-length", "32", "--seed", "7"));
        var embedded = await cli.RunAsync(_commandTimeout, [.. Arguments, "--store", Path.Combine(Folder, "embedded-store")]);
        Check(embedded);
        Reference = JsonNode.Parse(embedded.Stdout) ?? throw new InvalidOperationException($"The embedded run printed no JSON: {embedded}");
        Assert.Equal(6, Reference["languages"]!.AsObject().Count);
    }

    public Task DisposeAsync()
    {
        Directory.Delete(Folder, recursive: true);
        return Task.CompletedTask;
    }

    private static void Check(CliResult result)
    {
        if (result.ExitCode != 0) throw new InvalidOperationException($"Preparing the cluster test inputs failed: {result}");
    }
}
