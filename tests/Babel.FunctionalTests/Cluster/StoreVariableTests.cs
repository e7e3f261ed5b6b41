using System.Text.Json.Nodes;
using Xunit;

namespace Babel.FunctionalTests.Cluster;

/// <summary><c>BABEL_STORE</c> sets the default <c>--store</c> of the embedded engine, as a user sets it in their shell.</summary>
[Collection(ClusterCollection.Name)]
public sealed class StoreVariableTests(PerplexityInputs inputs) : IDisposable
{
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(3);
    private readonly string _folder = Directory.CreateTempSubdirectory("babel-store-variable-").FullName;

    [Fact]
    public async Task Without_store_a_command_keeps_its_job_in_the_folder_BABEL_STORE_names()
    {
        var store = Path.Combine(_folder, "elsewhere");
        var cli = new BabelCli(new Dictionary<string, string?>
        {
            ["BABEL_STORE"] = store,
            ["BABEL_STORAGE_CONNECTION_STRING"] = null,
            ["Babel__Cluster__ClusterId"] = null,
        }, _folder);
        var submitted = await cli.RunAsync(_timeout, [.. inputs.Arguments, "--no-wait", "--workers", "0"]);
        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var jobId = submitted.Stdout.Trim();
        Assert.True(Directory.Exists(Path.Combine(store, "state")), $"no job state under {store}");
        Assert.False(Directory.Exists(Path.Combine(_folder, ".babel")), "the job went to the default ./.babel");

        // The same store named explicitly holds the job.
        var status = await BabelCli.Standalone(_folder).RunAsync(_timeout, "status", jobId, "--store", store, "--format", "json");
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Equal(PerplexityInputs.Shards, JsonNode.Parse(status.Stdout)!["shards"]!.GetValue<int>());
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
