using System.Text.Json;
using Babel.Grains.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using Xunit;

namespace Babel.UnitTests.Artifacts;

public sealed class LocalFolderGrainStorageTests : IDisposable
{
    private static readonly GrainId _job = GrainId.Create("job", "profile/qwen-0.5b#1");

    private readonly ScratchFolder _scratch = new();
    private readonly ServiceProvider _services = new ServiceCollection().AddSerializer().BuildServiceProvider();

    public void Dispose()
    {
        _services.Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public async Task Written_state_is_read_back_by_a_new_provider_on_the_same_folder()
    {
        var written = new GrainState<JobStateSample> { State = new JobStateSample { Phase = "running", Tokens = 1L << 40, DoneShards = ["fra:0", "eng:1"] } };
        await NewStorage().WriteStateAsync("job", _job, written);

        var read = new GrainState<JobStateSample>();
        await NewStorage().ReadStateAsync("job", _job, read);

        Assert.True(read.RecordExists);
        Assert.Equal(written.ETag, read.ETag);
        Assert.Equal("running", read.State!.Phase);
        Assert.Equal(1L << 40, read.State.Tokens);
        Assert.Equal(["fra:0", "eng:1"], read.State.DoneShards);
    }

    [Fact]
    public async Task Reading_a_grain_that_was_never_written_gives_default_state()
    {
        var read = new GrainState<JobStateSample>();
        await NewStorage().ReadStateAsync("job", _job, read);

        Assert.False(read.RecordExists);
        Assert.Null(read.ETag);
        Assert.NotNull(read.State);
        Assert.Equal("", read.State.Phase);
    }

    [Fact]
    public async Task The_state_file_is_readable_json_named_after_the_grain()
    {
        var storage = NewStorage();
        await storage.WriteStateAsync("job", _job, new GrainState<JobStateSample> { State = new JobStateSample { Phase = "planned" } });

        var path = storage.PathOf("job", _job);
        Assert.Equal(Path.Combine(storage.Root, "job", "job", "profile%2Fqwen-0.5b%231.json"), path);
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        Assert.Equal("planned", document.RootElement.GetProperty("state").GetProperty("Phase").GetString());
        Assert.Equal(32, document.RootElement.GetProperty("etag").GetString()!.Length);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public async Task A_write_with_a_stale_etag_is_an_inconsistent_state()
    {
        var storage = NewStorage();
        var first = new GrainState<JobStateSample> { State = new JobStateSample { Phase = "a" } };
        await storage.WriteStateAsync("job", _job, first);
        var stale = new GrainState<JobStateSample>();
        await storage.ReadStateAsync("job", _job, stale);
        first.State.Phase = "b";
        await storage.WriteStateAsync("job", _job, first);

        stale.State!.Phase = "c";
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("job", _job, stale));

        var read = new GrainState<JobStateSample>();
        await storage.ReadStateAsync("job", _job, read);
        Assert.Equal("b", read.State!.Phase);
    }

    [Fact]
    public async Task Writing_a_new_record_with_an_etag_or_an_existing_one_without_is_an_inconsistent_state()
    {
        var storage = NewStorage();
        var phantom = new GrainState<JobStateSample> { State = new JobStateSample(), ETag = "ghost" };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("job", _job, phantom));

        await storage.WriteStateAsync("job", _job, new GrainState<JobStateSample> { State = new JobStateSample() });
        await Assert.ThrowsAsync<InconsistentStateException>(() =>
            storage.WriteStateAsync("job", _job, new GrainState<JobStateSample> { State = new JobStateSample() }));
    }

    [Fact]
    public async Task Clear_deletes_the_file_and_resets_the_state_and_checks_the_etag()
    {
        var storage = NewStorage();
        var state = new GrainState<JobStateSample> { State = new JobStateSample { Phase = "done" } };
        await storage.WriteStateAsync("job", _job, state);
        var stale = new GrainState<JobStateSample>();
        await storage.ReadStateAsync("job", _job, stale);
        await storage.WriteStateAsync("job", _job, state);

        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync("job", _job, stale));
        await storage.ClearStateAsync("job", _job, state);

        Assert.False(state.RecordExists);
        Assert.Null(state.ETag);
        Assert.Equal("", state.State.Phase);
        Assert.False(File.Exists(storage.PathOf("job", _job)));
        // A stale activation cannot write over a record that was cleared and created again.
        await storage.WriteStateAsync("job", _job, state);
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("job", _job, stale));
    }

    [Fact]
    public async Task States_of_different_grains_and_names_do_not_collide()
    {
        var storage = NewStorage();
        var other = GrainId.Create("job", "..");
        await storage.WriteStateAsync("job", _job, new GrainState<JobStateSample> { State = new JobStateSample { Phase = "one" } });
        await storage.WriteStateAsync("job", other, new GrainState<JobStateSample> { State = new JobStateSample { Phase = "two" } });
        await storage.WriteStateAsync("leases", _job, new GrainState<JobStateSample> { State = new JobStateSample { Phase = "three" } });

        var read = new GrainState<JobStateSample>();
        await storage.ReadStateAsync("job", other, read);
        Assert.Equal("two", read.State!.Phase);
        Assert.StartsWith(storage.Root, storage.PathOf("job", other), StringComparison.Ordinal);
        await storage.ReadStateAsync("leases", _job, read);
        Assert.Equal("three", read.State.Phase);
    }

    [Fact]
    public async Task The_silo_registration_provides_a_named_storage_with_the_silos_serializer()
    {
        var root = _scratch.Combine("silo-grains");
        var builder = Host.CreateApplicationBuilder();
        builder.UseOrleans(silo => silo.UseLocalhostClustering().AddLocalFolderGrainStorage("jobs", root));
        using var host = builder.Build();

        var storage = Assert.IsType<LocalFolderGrainStorage>(host.Services.GetRequiredKeyedService<IGrainStorage>("jobs"));
        await storage.WriteStateAsync("job", _job, new GrainState<JobStateSample> { State = new JobStateSample { Phase = "planned" } });

        Assert.Equal(Path.GetFullPath(root), storage.Root);
        using var document = JsonDocument.Parse(File.ReadAllBytes(storage.PathOf("job", _job)));
        Assert.Equal(JsonValueKind.Object, document.RootElement.GetProperty("state").ValueKind);
        var read = new GrainState<JobStateSample>();
        await storage.ReadStateAsync("job", _job, read);
        Assert.Equal("planned", read.State!.Phase);
    }

    private LocalFolderGrainStorage NewStorage() => new(
        "jobs",
        new LocalFolderGrainStorageOptions
        {
            RootDirectory = _scratch.Combine("grains"),
            GrainStorageSerializer = new SystemTextJsonGrainStorageSerializer(Options.Create(new SystemTextJsonGrainStorageSerializerOptions())),
        },
        _services.GetRequiredService<IActivatorProvider>());

    /// <summary>Shaped like real grain state: [GenerateSerializer], which also puts it on the allow-list of the silo's default (Newtonsoft) storage serializer.</summary>
    [GenerateSerializer]
    public sealed class JobStateSample
    {
        [Id(0)] public string Phase { get; set; } = "";
        [Id(1)] public long Tokens { get; set; }
        [Id(2)] public List<string> DoneShards { get; set; } = [];
    }
}
