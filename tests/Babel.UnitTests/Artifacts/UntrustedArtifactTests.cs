using System.IO.Compression;
using System.Text;
using Babel.Storage;
using Babel.Storage.Artifacts;
using Xunit;

namespace Babel.UnitTests.Artifacts;

/// <summary>What a worker reads back from the artifact store is untrusted: folders are checked against their key and marker, zips against escapes and size.</summary>
public sealed class UntrustedArtifactTests : IDisposable
{
    private readonly ScratchFolder _scratch = new();
    private readonly LocalFolderArtifactStore _store;

    public UntrustedArtifactTests() => _store = new LocalFolderArtifactStore(_scratch.Combine("store"));

    public void Dispose() => _scratch.Dispose();

    private async Task<string> UploadAsync()
    {
        var folder = _scratch.Combine("model");
        Directory.CreateDirectory(Path.Combine(folder, "sub"));
        await File.WriteAllTextAsync(Path.Combine(folder, "config.json"), "{\"hidden_size\": 32}");
        await File.WriteAllBytesAsync(Path.Combine(folder, "sub", "weights.bin"), [.. Enumerable.Range(0, 4096).Select(i => (byte)i)]);
        return await _store.UploadFolderAsync(folder, "models");
    }

    [Fact]
    public async Task An_intact_folder_downloads_with_the_same_hash()
    {
        var key = await UploadAsync();
        var local = await _store.DownloadFolderAsync(key, _scratch.Combine("cache"));
        Assert.Equal(key, "models/" + await ArtifactFolders.ComputeContentHashAsync(local));
    }

    [Fact]
    public async Task A_file_damaged_in_the_store_is_refused_and_nothing_is_left_in_the_cache()
    {
        var key = await UploadAsync();
        await _store.PutBytesAsync($"{key}/sub/weights.bin", new byte[4096]);
        var error = await Assert.ThrowsAsync<UserInputException>(() => _store.DownloadFolderAsync(key, _scratch.Combine("cache")));
        Assert.Contains("does not match its content hash", error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_scratch.Combine("cache"), key)));
    }

    [Fact]
    public async Task A_file_grown_in_the_store_stops_at_the_declared_bytes()
    {
        var key = await UploadAsync();
        await _store.PutBytesAsync($"{key}/sub/weights.bin", new byte[1 << 20]);
        var error = await Assert.ThrowsAsync<UserInputException>(() => _store.DownloadFolderAsync(key, _scratch.Combine("cache")));
        Assert.Contains("more than the 4,115 bytes its marker declares", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_added_in_the_store_or_an_unreadable_marker_is_refused()
    {
        var key = await UploadAsync();
        await _store.PutBytesAsync($"{key}/extra.json", "{}"u8.ToArray());
        var error = await Assert.ThrowsAsync<UserInputException>(() => _store.DownloadFolderAsync(key, _scratch.Combine("cache")));
        Assert.Contains("holds 3 files but its marker declares 2", error.Message, StringComparison.Ordinal);

        await _store.PutBytesAsync($"{key}/{ArtifactFolders.CompleteMarker}", "{\"files\": \"x\"}"u8.ToArray());
        error = await Assert.ThrowsAsync<UserInputException>(() => _store.DownloadFolderAsync(key, _scratch.Combine("cache")));
        Assert.Contains("marker of the artifact folder", error.Message, StringComparison.Ordinal);
    }

    private static MemoryStream Zip(params (string Name, byte[] Bytes)[] entries)
    {
        var stream = new MemoryStream();
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, bytes) in entries)
            {
                using var entry = zip.CreateEntry(name).Open();
                entry.Write(bytes);
            }
        }
        stream.Position = 0;
        return stream;
    }

    [Fact]
    public void A_checkpoint_zip_unpacks_inside_its_folder()
    {
        using var zip = Zip(("checkpoint/state.json", "{}"u8.ToArray()), ("weights.bin", new byte[100]));
        var target = _scratch.Combine("work");
        ZipArchives.ExtractToNewDirectory(zip, target, "the checkpoint");
        Assert.Equal("{}", File.ReadAllText(Path.Combine(target, "checkpoint", "state.json")));
        Assert.Equal(100, new FileInfo(Path.Combine(target, "weights.bin")).Length);
    }

    [Theory]
    [InlineData("../escaped.txt")]
    [InlineData("a/../../escaped.txt")]
    [InlineData("/escaped-by-a-babel-test.txt")]
    public void A_zip_entry_that_leaves_the_folder_is_refused(string name)
    {
        using var zip = Zip((name, "x"u8.ToArray()));
        var target = _scratch.Combine("work");
        var error = Assert.Throws<UserInputException>(() => ZipArchives.ExtractToNewDirectory(zip, target, "the checkpoint"));
        Assert.Contains("points outside its folder", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_scratch.Combine("escaped.txt")));
        Assert.False(File.Exists("/escaped-by-a-babel-test.txt"));
    }

    [Fact]
    public void A_zip_bomb_and_a_corrupt_zip_are_refused()
    {
        using var bomb = Zip(("zeros.bin", new byte[1 << 20]));
        var error = Assert.Throws<UserInputException>(() => ZipArchives.ExtractToNewDirectory(bomb, _scratch.Combine("a"), "the checkpoint", maxBytes: 1 << 16));
        Assert.Contains("unpacks to more than 65,536 bytes", error.Message, StringComparison.Ordinal);

        using var many = Zip([.. Enumerable.Range(0, 20).Select(i => ($"f{i}", new byte[1]))]);
        error = Assert.Throws<UserInputException>(() => ZipArchives.ExtractToNewDirectory(many, _scratch.Combine("b"), "the checkpoint", maxEntries: 10));
        Assert.Contains("holds 20 entries", error.Message, StringComparison.Ordinal);

        using var corrupt = new MemoryStream(Encoding.UTF8.GetBytes("PK this is not a zip"));
        error = Assert.Throws<UserInputException>(() => ZipArchives.ExtractToNewDirectory(corrupt, _scratch.Combine("c"), "the checkpoint"));
        Assert.Contains("not a readable zip archive", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_sealed_zip_opens_only_when_intact()
    {
        using var zip = Zip(("weights.bin", new byte[100]));
        var sealedZip = ZipArchives.Seal(zip.ToArray());
        Assert.Equal(zip.ToArray(), ZipArchives.Unseal(sealedZip));
        var damaged = (byte[])sealedZip.Clone();
        damaged[^10] ^= 0xFF;
        Assert.Null(ZipArchives.Unseal(damaged));
        Assert.Null(ZipArchives.Unseal(sealedZip[..^1]));
        Assert.Null(ZipArchives.Unseal(zip.ToArray()));
    }
}
