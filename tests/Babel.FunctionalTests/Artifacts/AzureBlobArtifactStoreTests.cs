using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Babel.FunctionalTests.Infrastructure;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Tests.Artifacts;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Artifacts;

/// <summary>The artifact store contract on Azure Blob against a real Azurite, plus outages and dead endpoints.</summary>
[Collection(AzuriteCollection.Name)]
public sealed class AzureBlobArtifactStoreTests : ArtifactStoreContract, IDisposable
{
    private readonly AzuriteFixture _azurite;
    private readonly ITestOutputHelper _output;
    private readonly AzureBlobArtifactStore _store;
    private readonly string _localFolder = Directory.CreateTempSubdirectory("babel-test-").FullName;

    public AzureBlobArtifactStoreTests(AzuriteFixture azurite, ITestOutputHelper output)
    {
        _azurite = azurite;
        _output = output;
        // A container per test: every test starts from an empty store.
        _store = AzureBlobArtifactStore.Create(azurite.ConnectionString, $"t{Guid.NewGuid():N}");
    }

    protected override IArtifactStore Store => _store;

    protected override string LocalFolder => _localFolder;

    public void Dispose() => Directory.Delete(_localFolder, recursive: true);

    [Fact]
    public async Task The_container_is_created_on_the_first_write()
    {
        Assert.False((await _store.Container.ExistsAsync()).Value);
        Assert.Null(await _store.GetBytesAsync("jobs/j1/a.json"));
        Assert.Empty(await ListAsync(""));

        await _store.PutBytesAsync("jobs/j1/a.json", "{}"u8.ToArray());

        Assert.True((await _store.Container.ExistsAsync()).Value);
    }

    [Fact]
    public async Task A_storage_outage_of_three_seconds_is_survived_by_retries()
    {
        await _store.PutBytesAsync("jobs/j1/before.json", "before"u8.ToArray());
        var outage = TimeSpan.FromSeconds(3);

        await _azurite.Azurite.StopAsync();
        var clock = Stopwatch.StartNew();
        var restart = Task.Run(async () =>
        {
            await Task.Delay(outage);
            await _azurite.Azurite.StartAsync();
        });
        await _store.PutBytesAsync("jobs/j1/during.json", "during"u8.ToArray());
        var putDone = clock.Elapsed;
        var before = await _store.GetBytesAsync("jobs/j1/before.json");
        await restart;
        _output.WriteLine($"the put during a {outage.TotalSeconds:0} s outage finished after {putDone.TotalSeconds:0.00} s");

        Assert.True(putDone >= outage, $"the put finished after {putDone.TotalSeconds:0.0} s, inside the outage");
        Assert.Equal("before"u8.ToArray(), before);
        Assert.Equal("during"u8.ToArray(), await _store.GetBytesAsync("jobs/j1/during.json"));
    }

    [Fact]
    public async Task Reads_during_an_outage_are_retried_too()
    {
        await _store.PutBytesAsync("jobs/j1/a.json", "a"u8.ToArray());

        await _azurite.Azurite.StopAsync();
        var restart = Task.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
            await _azurite.Azurite.StartAsync();
        });
        var clock = Stopwatch.StartNew();
        var read = await _store.GetBytesAsync("jobs/j1/a.json");
        _output.WriteLine($"the read during a 3 s outage finished after {clock.Elapsed.TotalSeconds:0.00} s");
        await restart;

        Assert.Equal("a"u8.ToArray(), read);
    }

    [Fact]
    public async Task An_endpoint_where_nothing_listens_fails_quickly_with_a_clear_message()
    {
        var port = UnusedPort();
        var store = AzureBlobArtifactStore.Create(
            $"DefaultEndpointsProtocol=http;AccountName={Azurite.AccountName};AccountKey={Azurite.AccountKey};BlobEndpoint=http://127.0.0.1:{port}/{Azurite.AccountName};",
            "artifacts");

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<UserInputException>(() => store.PutBytesAsync("jobs/j1/a.json", "{}"u8.ToArray()));
        var elapsed = clock.Elapsed;
        _output.WriteLine($"a put to a dead endpoint failed after {elapsed.TotalSeconds:0.00} s: {error.Message}");

        Assert.True(elapsed < TimeSpan.FromSeconds(12), $"failing took {elapsed.TotalSeconds:0.0} s");
        Assert.Equal($"Could not reach Azure Storage at http://127.0.0.1:{port} (account '{Azurite.AccountName}'); check the connection string and that the storage service is running.", error.Message);
        await Assert.ThrowsAsync<UserInputException>(() => store.GetBytesAsync("jobs/j1/a.json"));
    }

    [Fact]
    public async Task A_wrong_account_key_is_reported_as_bad_credentials()
    {
        var wrongKey = Convert.ToBase64String(new byte[64]);
        var store = AzureBlobArtifactStore.Create(_azurite.ConnectionString.Replace(Azurite.AccountKey, wrongKey, StringComparison.Ordinal), "artifacts");

        var error = await Assert.ThrowsAsync<UserInputException>(() => store.PutBytesAsync("a.json", "{}"u8.ToArray()));

        Assert.Contains("rejected the credentials", error.Message);
    }

    [Theory]
    [InlineData("not a connection string", "artifacts")]
    [InlineData("", "artifacts")]
    [InlineData("UseDevelopmentStorage=true", "Bad_Name")]
    [InlineData("UseDevelopmentStorage=true", "ab")]
    public void Malformed_settings_are_user_errors(string connectionString, string container)
    {
        var error = Assert.Throws<UserInputException>(() => AzureBlobArtifactStore.Create(connectionString, container));
        Assert.DoesNotContain("\n", error.Message);
    }

    private static int UnusedPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
