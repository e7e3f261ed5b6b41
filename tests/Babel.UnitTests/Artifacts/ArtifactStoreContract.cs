using System.Text;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Xunit;

namespace Babel.Tests.Artifacts;

/// <summary>
/// The behaviour every <see cref="IArtifactStore"/> promises. Unit tests run it on the local folder store,
/// functional tests on Azure Blob against Azurite (this file is linked into both projects).
/// </summary>
public abstract class ArtifactStoreContract
{
    /// <summary>A fresh, empty store for the current test.</summary>
    protected abstract IArtifactStore Store { get; }

    /// <summary>A fresh local folder for the current test.</summary>
    protected abstract string LocalFolder { get; }

    [Fact]
    public async Task PutBytes_then_get_returns_the_same_bytes()
    {
        byte[] content = [0, 1, 2, 255, .. Encoding.UTF8.GetBytes("ελληνικά")];
        await Store.PutBytesAsync("jobs/j1/shards/s1.json", content);

        Assert.Equal(content, await Store.GetBytesAsync("jobs/j1/shards/s1.json"));
        Assert.True(await Store.ExistsAsync("jobs/j1/shards/s1.json"));
    }

    [Fact]
    public async Task Put_from_a_non_seekable_stream_round_trips()
    {
        var content = Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray();
        await using (var stream = new ForwardOnlyStream(content))
        {
            await Store.PutAsync("models/abc/model.safetensors", stream);
        }

        await using var read = await Store.OpenReadAsync("models/abc/model.safetensors");
        Assert.NotNull(read);
        using var copy = new MemoryStream();
        await read.CopyToAsync(copy);
        Assert.Equal(content, copy.ToArray());
    }

    [Fact]
    public async Task A_missing_key_reads_as_null_and_does_not_exist()
    {
        await Store.PutBytesAsync("jobs/j1/other.json", "{}"u8.ToArray());

        Assert.Null(await Store.GetBytesAsync("jobs/j1/missing.json"));
        Assert.Null(await Store.OpenReadAsync("jobs/j1/missing.json"));
        Assert.False(await Store.ExistsAsync("jobs/j1/missing.json"));
        Assert.Null(await Store.GetBytesAsync("nothing/here.json"));
    }

    [Fact]
    public async Task Put_replaces_an_existing_object()
    {
        await Store.PutBytesAsync("a/b.txt", "first, longer content"u8.ToArray());
        await Store.PutBytesAsync("a/b.txt", "second"u8.ToArray());

        Assert.Equal("second"u8.ToArray(), await Store.GetBytesAsync("a/b.txt"));
    }

    [Fact]
    public async Task List_returns_the_keys_under_a_prefix_in_ordinal_order()
    {
        string[] keys = ["jobs/j1/b.json", "jobs/j1/a.json", "jobs/j1/B.json", "jobs/j1/sub/z.json", "jobs/j1/.complete", "jobs/j10/x.json", "jobs/j2/a.json", "models/m/config.json"];
        foreach (var key in keys) await Store.PutBytesAsync(key, Encoding.UTF8.GetBytes(key));

        Assert.Equal(
            ["jobs/j1/.complete", "jobs/j1/B.json", "jobs/j1/a.json", "jobs/j1/b.json", "jobs/j1/sub/z.json"],
            await ListAsync("jobs/j1/"));
        Assert.Equal(
            ["jobs/j1/.complete", "jobs/j1/B.json", "jobs/j1/a.json", "jobs/j1/b.json", "jobs/j1/sub/z.json", "jobs/j10/x.json"],
            await ListAsync("jobs/j1"));
        Assert.Equal(keys.Order(StringComparer.Ordinal), await ListAsync(""));
        Assert.Empty(await ListAsync("nothing/"));
    }

    [Fact]
    public async Task Delete_removes_the_object_and_deleting_a_missing_key_is_not_an_error()
    {
        await Store.PutBytesAsync("jobs/j1/a.json", "1"u8.ToArray());
        await Store.PutBytesAsync("jobs/j1/b.json", "2"u8.ToArray());

        await Store.DeleteAsync("jobs/j1/a.json");
        await Store.DeleteAsync("jobs/j1/a.json");
        await Store.DeleteAsync("never/was.json");

        Assert.False(await Store.ExistsAsync("jobs/j1/a.json"));
        Assert.Equal(["jobs/j1/b.json"], await ListAsync("jobs/"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("/jobs/a.json")]
    [InlineData("jobs/../a.json")]
    [InlineData("..")]
    [InlineData("jobs/..")]
    [InlineData("jobs\\a.json")]
    [InlineData("jobs//a.json")]
    [InlineData("jobs/./a.json")]
    [InlineData("jobs/")]
    public async Task Bad_keys_are_rejected(string key)
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Store.PutBytesAsync(key, "x"u8.ToArray()));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.PutAsync(key, new MemoryStream()));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.GetBytesAsync(key));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.OpenReadAsync(key));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.ExistsAsync(key));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.DeleteAsync(key));
    }

    [Theory]
    [InlineData("/jobs")]
    [InlineData("../")]
    [InlineData("jobs/../")]
    [InlineData("jobs\\")]
    public async Task Bad_prefixes_are_rejected(string prefix)
    {
        await Assert.ThrowsAsync<ArgumentException>(() => ListAsync(prefix));
    }

    [Fact]
    public async Task A_reader_never_sees_a_partial_object()
    {
        const int size = 1 << 20;
        var versions = new[] { (byte)'a', (byte)'b' }.Select(b => Enumerable.Repeat(b, size).ToArray()).ToArray();
        await Store.PutBytesAsync("big/object.bin", versions[0]);
        using var done = new CancellationTokenSource();

        var writer = Task.Run(async () =>
        {
            for (var i = 1; i <= 12; i++) await Store.PutBytesAsync("big/object.bin", versions[i % 2]);
            done.Cancel();
        });
        var reads = 0;
        while (!done.IsCancellationRequested || reads == 0)
        {
            var seen = await Store.GetBytesAsync("big/object.bin");
            Assert.NotNull(seen);
            Assert.Equal(size, seen.Length);
            Assert.True(seen.AsSpan().IndexOfAnyExcept(seen[0]) < 0, "a read mixed two versions");
            reads++;
        }
        await writer;
    }

    [Fact]
    public async Task A_folder_uploads_once_and_downloads_to_the_same_content()
    {
        var source = Path.Combine(LocalFolder, "model");
        WriteFile(source, "config.json", "{\"hidden_size\": 64}");
        WriteFile(source, "model.safetensors", new string('w', 100_000));
        WriteFile(source, "nested/deeper/tokenizer.json", "{}");

        var key = await Store.UploadFolderAsync(source, "models");
        var again = await Store.UploadFolderAsync(source, "models");
        var local = await Store.DownloadFolderAsync(key, Path.Combine(LocalFolder, "cache"));

        Assert.Equal(key, again);
        Assert.Matches("^models/[0-9a-f]{64}$", key);
        Assert.Equal(Path.Combine(LocalFolder, "cache", "models", key["models/".Length..]), local);
        Assert.Equal(await ArtifactFolders.ComputeContentHashAsync(source), await ArtifactFolders.ComputeContentHashAsync(local));
        Assert.Equal(
            [$"{key}/.complete", $"{key}/config.json", $"{key}/model.safetensors", $"{key}/nested/deeper/tokenizer.json"],
            await ListAsync(key + "/"));
        Assert.False(File.Exists(Path.Combine(local, ArtifactFolders.CompleteMarker)));
    }

    [Fact]
    public async Task Downloading_a_folder_that_was_never_completed_is_a_user_error()
    {
        await Store.PutBytesAsync("models/half/config.json", "{}"u8.ToArray());

        var error = await Assert.ThrowsAsync<UserInputException>(() => Store.DownloadFolderAsync("models/half", Path.Combine(LocalFolder, "cache")));
        Assert.Contains("models/half", error.Message);
        Assert.False(Directory.Exists(Path.Combine(LocalFolder, "cache", "models", "half")));
    }

    protected async Task<List<string>> ListAsync(string prefix)
    {
        var keys = new List<string>();
        await foreach (var key in Store.ListAsync(prefix)) keys.Add(key);
        return keys;
    }

    protected static void WriteFile(string folder, string relativePath, string text)
    {
        var path = Path.Combine(folder, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    [Fact]
    public async Task A_range_reads_the_bytes_there_fewer_at_the_end_and_none_past_it()
    {
        var content = Enumerable.Range(0, 100_000).Select(i => (byte)(i * 13)).ToArray();
        await Store.PutBytesAsync("tokens/t.tokens", content);
        // The store's own range read, and the interface's default one (read and skip) that other stores inherit.
        foreach (var store in new[] { Store, new WithoutRangeReads(Store) })
        {
            Assert.Equal(content[70_000..70_100], await store.GetRangeAsync("tokens/t.tokens", 70_000, 100));
            Assert.Equal(content[..5], await store.GetRangeAsync("tokens/t.tokens", 0, 5));
            Assert.Equal(content[99_990..], await store.GetRangeAsync("tokens/t.tokens", 99_990, 64));
            Assert.Empty((await store.GetRangeAsync("tokens/t.tokens", 100_000, 8))!);
            Assert.Empty((await store.GetRangeAsync("tokens/t.tokens", 200_000, 8))!);
            Assert.Empty((await store.GetRangeAsync("tokens/t.tokens", 10, 0))!);
            Assert.Null(await store.GetRangeAsync("tokens/missing.tokens", 0, 8));
        }
    }

    /// <summary>A store that forwards everything but range reads, which it leaves to the interface's default.</summary>
    private sealed class WithoutRangeReads(IArtifactStore inner) : IArtifactStore
    {
        public Task PutAsync(string key, Stream content, CancellationToken cancellationToken = default) => inner.PutAsync(key, content, cancellationToken);
        public Task PutBytesAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default) => inner.PutBytesAsync(key, content, cancellationToken);
        public Task<byte[]?> GetBytesAsync(string key, CancellationToken cancellationToken = default) => inner.GetBytesAsync(key, cancellationToken);
        public Task<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken = default) => inner.OpenReadAsync(key, cancellationToken);
        public Task<bool> ExistsAsync(string key, CancellationToken cancellationToken = default) => inner.ExistsAsync(key, cancellationToken);
        public IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);
        public Task DeleteAsync(string key, CancellationToken cancellationToken = default) => inner.DeleteAsync(key, cancellationToken);
    }

    /// <summary>A stream that cannot seek, like a network response.</summary>
    private sealed class ForwardOnlyStream(byte[] content) : MemoryStream(content)
    {
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin loc) => throw new NotSupportedException();
    }
}
