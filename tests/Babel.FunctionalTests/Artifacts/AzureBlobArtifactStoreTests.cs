using System.Diagnostics;
using Azure.Storage.Blobs;
using Azure.Storage.Sas;
using Babel.FunctionalTests.Infrastructure;
using Babel.Silo;
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
        var port = LoopbackPorts.Free();
        var store = AzureBlobArtifactStore.Create(
            $"DefaultEndpointsProtocol=http;AccountName={Azurite.AccountName};AccountKey={Azurite.AccountKey};BlobEndpoint=http://127.0.0.1:{port}/{Azurite.AccountName};",
            "artifacts");

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<StorageUnavailableException>(() => store.PutBytesAsync("jobs/j1/a.json", "{}"u8.ToArray()));
        var elapsed = clock.Elapsed;
        _output.WriteLine($"a put to a dead endpoint failed after {elapsed.TotalSeconds:0.00} s: {error.Message}");

        Assert.True(elapsed < TimeSpan.FromSeconds(12), $"failing took {elapsed.TotalSeconds:0.0} s");
        Assert.Equal($"Could not reach Azure Storage at http://127.0.0.1:{port} (account '{Azurite.AccountName}'); check the connection string and that the storage service is running.", error.Message);
        await Assert.ThrowsAsync<StorageUnavailableException>(() => store.GetBytesAsync("jobs/j1/a.json"));
    }

    [Fact]
    public async Task A_wrong_account_key_is_reported_as_bad_credentials()
    {
        var wrongKey = Convert.ToBase64String(new byte[64]);
        var store = AzureBlobArtifactStore.Create(_azurite.ConnectionString.Replace(Azurite.AccountKey, wrongKey, StringComparison.Ordinal), "artifacts");

        var error = await Assert.ThrowsAsync<UserInputException>(() => store.PutBytesAsync("a.json", "{}"u8.ToArray()));

        Assert.Contains("rejected the credentials", error.Message);
    }

    [Fact]
    public async Task A_SAS_on_the_existing_container_writes_reads_lists_and_deletes_there_and_nowhere_else()
    {
        // What a client holds: a SAS scoped to the artifact container, which may not create containers.
        await _store.Container.CreateAsync();
        var store = AzureBlobArtifactStore.Create(ContainerSas(_store.Container), _store.Container.Name);

        await store.PutBytesAsync("jobs/j1/a.json", "a"u8.ToArray());
        await store.PutAsync("inputs/m/config.json", new MemoryStream("{}"u8.ToArray()));

        Assert.Equal("a"u8.ToArray(), await store.GetBytesAsync("jobs/j1/a.json"));
        Assert.Equal(["inputs/m/config.json", "jobs/j1/a.json"], await ListAsync(store, ""));
        await store.DeleteAsync("jobs/j1/a.json");
        Assert.False(await store.ExistsAsync("jobs/j1/a.json"));
        var other = AzureBlobArtifactStore.Create(ContainerSas(_store.Container), $"t{Guid.NewGuid():N}");
        var error = await Assert.ThrowsAsync<UserInputException>(() => other.PutBytesAsync("a.json", "{}"u8.ToArray()));
        Assert.Contains("rejected the credentials", error.Message);
    }

    [Fact]
    public async Task A_SAS_on_a_container_that_does_not_exist_says_to_create_it()
    {
        var store = AzureBlobArtifactStore.Create(ContainerSas(_store.Container), _store.Container.Name);

        var error = await Assert.ThrowsAsync<UserInputException>(() => store.PutBytesAsync("jobs/j1/a.json", "a"u8.ToArray()));

        Assert.Equal($"The artifact container '{_store.Container.Name}' does not exist at {_store.Container.Uri.GetLeftPart(UriPartial.Authority)} and this credential " +
            "may not create it; create it with the account's key (az storage container create, as deploy/k8s/README.md shows) or run a silo job first.", error.Message);
        Assert.False((await _store.Container.ExistsAsync()).Value);
    }

    /// <summary>A connection string whose SAS may read, add, create, write, delete and list blobs in <paramref name="container"/> only.</summary>
    private static string ContainerSas(BlobContainerClient container)
    {
        var permissions = BlobContainerSasPermissions.Read | BlobContainerSasPermissions.Add | BlobContainerSasPermissions.Create
            | BlobContainerSasPermissions.Write | BlobContainerSasPermissions.Delete | BlobContainerSasPermissions.List;
        var sas = container.GenerateSasUri(permissions, DateTimeOffset.UtcNow.AddHours(1));
        return $"BlobEndpoint={container.Uri.GetLeftPart(UriPartial.Authority)}/{Azurite.AccountName};SharedAccessSignature={sas.Query.TrimStart('?')}";
    }

    private static async Task<List<string>> ListAsync(IArtifactStore store, string prefix)
    {
        var keys = new List<string>();
        await foreach (var key in store.ListAsync(prefix))
            keys.Add(key);
        return keys;
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
}
