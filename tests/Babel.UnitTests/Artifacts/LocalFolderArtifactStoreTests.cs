using System.Collections.Concurrent;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Babel.Tests.Artifacts;
using Xunit;

namespace Babel.UnitTests.Artifacts;

public sealed class LocalFolderArtifactStoreTests : ArtifactStoreContract, IDisposable
{
    private readonly ScratchFolder _scratch = new();
    private readonly LocalFolderArtifactStore _store;

    public LocalFolderArtifactStoreTests() => _store = new LocalFolderArtifactStore(_scratch.Combine("store"));

    protected override IArtifactStore Store => _store;

    protected override string LocalFolder => _scratch.Path;

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Keys_are_files_under_the_root_and_work_in_progress_is_not_listed()
    {
        await _store.PutBytesAsync("jobs/j1/a.json", "{}"u8.ToArray());
        File.WriteAllText(Path.Combine(_store.Root, "jobs", "j1", $".b.json.{Guid.NewGuid():N}.tmp"), "half");

        Assert.True(File.Exists(Path.Combine(_store.Root, "jobs", "j1", "a.json")));
        Assert.Equal(["jobs/j1/a.json"], await ListAsync(""));
    }

    [Fact]
    public async Task A_reader_keeps_the_version_it_opened()
    {
        await _store.PutBytesAsync("a.txt", "old"u8.ToArray());
        await using var reader = await _store.OpenReadAsync("a.txt");
        await _store.PutBytesAsync("a.txt", "new!"u8.ToArray());

        using var copy = new MemoryStream();
        await reader!.CopyToAsync(copy);
        Assert.Equal("old"u8.ToArray(), copy.ToArray());
        Assert.Equal("new!"u8.ToArray(), await _store.GetBytesAsync("a.txt"));
    }

    [Fact]
    public async Task The_content_hash_depends_on_names_and_bytes_only()
    {
        var first = _scratch.Combine("first");
        var second = _scratch.Combine("second");
        foreach (var folder in new[] { first, second })
        {
            WriteFile(folder, "b.txt", "bee");
            WriteFile(folder, "a/c.txt", "sea");
        }
        File.SetLastWriteTimeUtc(Path.Combine(second, "b.txt"), new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc));

        var hash = await ArtifactFolders.ComputeContentHashAsync(first);
        Assert.Equal(hash, await ArtifactFolders.ComputeContentHashAsync(second));
        // Pinned (computed independently in Python) so that a change of layout, which would orphan every stored folder, is noticed.
        Assert.Equal("1858bdf0f306d8c8df464323e6af1a5ddee822db9b7861d0165c5952fae49712", hash);

        File.WriteAllText(Path.Combine(second, "b.txt"), "beE");
        Assert.NotEqual(hash, await ArtifactFolders.ComputeContentHashAsync(second));
        File.WriteAllText(Path.Combine(second, "b.txt"), "bee");
        File.Move(Path.Combine(second, "b.txt"), Path.Combine(second, "d.txt"));
        Assert.NotEqual(hash, await ArtifactFolders.ComputeContentHashAsync(second));
    }

    [Fact]
    public async Task Moving_bytes_between_a_name_and_the_content_changes_the_hash()
    {
        var first = _scratch.Combine("first");
        var second = _scratch.Combine("second");
        WriteFile(first, "ab", "c");
        WriteFile(second, "a", "bc");

        Assert.NotEqual(await ArtifactFolders.ComputeContentHashAsync(first), await ArtifactFolders.ComputeContentHashAsync(second));
    }

    [Fact]
    public async Task The_marker_is_written_last_and_a_complete_folder_is_not_uploaded_again()
    {
        var source = _scratch.Combine("model");
        WriteFile(source, "config.json", "{}");
        WriteFile(source, "weights/model-00001-of-00002.safetensors", new string('x', 5000));
        WriteFile(source, "weights/model-00002-of-00002.safetensors", new string('y', 5000));
        var recording = new RecordingStore(_store);

        var key = await recording.UploadFolderAsync(source, "models");
        Assert.Equal(4, recording.Puts.Count);
        Assert.Equal($"{key}/{ArtifactFolders.CompleteMarker}", recording.Puts.Last());

        recording.Puts.Clear();
        Assert.Equal(key, await recording.UploadFolderAsync(source, "models"));
        Assert.Empty(recording.Puts);
    }

    [Fact]
    public async Task An_interrupted_upload_is_completed_by_the_next_one()
    {
        var source = _scratch.Combine("model");
        WriteFile(source, "config.json", "{}");
        WriteFile(source, "model.safetensors", "weights");
        var failing = new RecordingStore(_store) { FailOnPutOf = "model.safetensors" };

        await Assert.ThrowsAsync<IOException>(() => failing.UploadFolderAsync(source, "models"));
        var hash = await ArtifactFolders.ComputeContentHashAsync(source);
        Assert.False(await _store.ExistsAsync($"models/{hash}/{ArtifactFolders.CompleteMarker}"));

        var key = await _store.UploadFolderAsync(source, "models");
        Assert.True(await _store.ExistsAsync($"{key}/{ArtifactFolders.CompleteMarker}"));
        Assert.Equal("weights"u8.ToArray(), await _store.GetBytesAsync($"{key}/model.safetensors"));
    }

    [Fact]
    public async Task Concurrent_downloads_of_one_folder_all_get_the_same_complete_folder()
    {
        var source = _scratch.Combine("model");
        for (var i = 0; i < 6; i++) WriteFile(source, $"part{i}.bin", new string((char)('a' + i), 20_000));
        var key = await _store.UploadFolderAsync(source, "models");
        var slow = new RecordingStore(_store) { ReadDelay = TimeSpan.FromMilliseconds(20) };
        var cache = _scratch.Combine("cache");

        var paths = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => slow.DownloadFolderAsync(key, cache))));

        Assert.Single(paths.Distinct());
        Assert.True(slow.Reads > 6, "the downloads should have overlapped");
        Assert.Equal(await ArtifactFolders.ComputeContentHashAsync(source), await ArtifactFolders.ComputeContentHashAsync(paths[0]));
        // Losers discard their temporary folders.
        Assert.Equal([paths[0]], Directory.GetDirectories(Path.GetDirectoryName(paths[0])!));
    }

    [Fact]
    public async Task A_present_folder_is_reused_without_reading_the_store()
    {
        var source = _scratch.Combine("model");
        WriteFile(source, "config.json", "{}");
        var key = await _store.UploadFolderAsync(source, "models");
        var cache = _scratch.Combine("cache");
        await _store.DownloadFolderAsync(key, cache);
        var counting = new RecordingStore(_store);

        await counting.DownloadFolderAsync(key, cache);

        Assert.Equal(0, counting.Reads);
    }

    [Fact]
    public async Task Uploading_a_missing_folder_is_a_user_error()
    {
        var error = await Assert.ThrowsAsync<UserInputException>(() => _store.UploadFolderAsync(_scratch.Combine("nope"), "models"));
        Assert.Contains("nope", error.Message);
    }

    /// <summary>Passes calls through to a real store, recording puts, counting reads, optionally slowing reads or failing a put.</summary>
    private sealed class RecordingStore(IArtifactStore inner) : IArtifactStore
    {
        private int _reads;

        public ConcurrentQueue<string> Puts { get; } = new();
        public int Reads => _reads;
        public TimeSpan ReadDelay { get; init; }
        public string? FailOnPutOf { get; init; }

        public async Task PutAsync(string key, Stream content, CancellationToken cancellationToken = default)
        {
            if (FailOnPutOf is not null && key.EndsWith(FailOnPutOf, StringComparison.Ordinal)) throw new IOException("disk full");
            await inner.PutAsync(key, content, cancellationToken);
            Puts.Enqueue(key);
        }

        public async Task PutBytesAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
        {
            await inner.PutBytesAsync(key, content, cancellationToken);
            Puts.Enqueue(key);
        }

        public Task<byte[]?> GetBytesAsync(string key, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _reads);
            return inner.GetBytesAsync(key, cancellationToken);
        }

        public async Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _reads);
            await Task.Delay(ReadDelay, cancellationToken);
            return await inner.OpenReadAsync(key, cancellationToken);
        }

        public Task<bool> ExistsAsync(string key, CancellationToken cancellationToken = default) => inner.ExistsAsync(key, cancellationToken);
        public IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);
        public Task DeleteAsync(string key, CancellationToken cancellationToken = default) => inner.DeleteAsync(key, cancellationToken);
    }
}
