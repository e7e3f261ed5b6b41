using Babel.Grains.Distillation;
using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Storage.Artifacts;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>The worker's cache of inputs: each read once for many shards, bounded, and never keeping a failed read.</summary>
public class WorkerCacheTests
{
    [Fact]
    public void A_value_is_loaded_once_for_many_shards_even_when_they_ask_at_once()
    {
        var cache = new WorkerCache();
        var loads = 0;
        string Load()
        {
            Interlocked.Increment(ref loads);
            Thread.Sleep(20);
            return "dataset";
        }
        Parallel.For(0, 16, _ => Assert.Equal("dataset", cache.GetOrAdd("datasets/a", Load, _ => 10)));
        Assert.Equal(1, loads);
        Assert.Equal(1, cache.Loads);
        // The same key for another type is another value.
        Assert.Equal(7, cache.GetOrAdd("datasets/a", () => new List<int> { 7 }, _ => 10)[0]);
        Assert.Equal(2, cache.Loads);
    }

    [Fact]
    public void It_keeps_at_most_its_entries_and_bytes_least_recently_used_out_first()
    {
        var cache = new WorkerCache(maxEntries: 2, maxBytes: 100);
        cache.GetOrAdd("a", () => "A", _ => 10);
        cache.GetOrAdd("b", () => "B", _ => 10);
        cache.GetOrAdd("a", () => "A2", _ => 10);
        cache.GetOrAdd("c", () => "C", _ => 10);
        // b was the least recently used: it is read again, a is not.
        Assert.Equal("A", cache.GetOrAdd("a", () => "A3", _ => 10));
        Assert.Equal("B2", cache.GetOrAdd("b", () => "B2", _ => 10));
        Assert.Equal(2, cache.Count);

        // A value over the byte bound is returned but not kept.
        Assert.Equal("big", cache.GetOrAdd("big", () => "big", _ => 1000));
        Assert.Equal("big2", cache.GetOrAdd("big", () => "big2", _ => 1000));
        Assert.Equal(0, cache.Count);
        cache.GetOrAdd("d", () => "D", _ => 60);
        cache.GetOrAdd("e", () => "E", _ => 60);
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public void A_load_that_fails_is_not_kept_so_the_next_shard_reads_again()
    {
        var cache = new WorkerCache();
        Assert.Throws<IOException>(() => cache.GetOrAdd<string>("a", () => throw new IOException("storage hiccup"), _ => 1));
        Assert.Equal("A", cache.GetOrAdd("a", () => "A", _ => 1));
        Assert.Equal(2, cache.Loads);
    }

    [Fact]
    public async Task Distillation_shards_of_one_dataset_read_its_file_once_per_worker()
    {
        using var scratch = new ScratchFolder();
        var folder = Directory.CreateDirectory(scratch.Combine("dataset")).FullName;
        await File.WriteAllLinesAsync(Path.Combine(folder, "q.jsonl"), Enumerable.Range(0, 10).Select(i => $"{{\"id\":\"q{i}\",\"question\":\"What is {i} + 1?\",\"answer\":\"{i + 1}\"}}"));
        var store = new LocalFolderArtifactStore(scratch.Combine("store"));
        var key = await store.UploadFolderAsync(folder, "datasets");
        var cache = new WorkerCache();
        using var models = new ModelReplicas();
        var context = new ShardContext("test", "cpu:0", 1, new JobTestInputs.StoreFolders(store, scratch.Combine("cache")), models, store, cache);
        var p = new DistillJobParameters("local", key, "q.jsonl", "jsonl", "train", "math", Model: "models/m", QuestionsPerShard: 3);

        var first = DistillJob.CachedQuestions(context, p, CancellationToken.None);
        // The worker's copy is gone: later shards must not read it again.
        File.Delete(Path.Combine(scratch.Combine("cache"), key, "q.jsonl"));
        foreach (var _ in Enumerable.Range(0, 3)) Assert.Same(first, DistillJob.CachedQuestions(context, p, CancellationToken.None));
        Assert.Equal(10, first.Count);
        Assert.Equal(1, cache.Loads);
        // Another limit is another value: it is read (and the missing file is then a clear error).
        Assert.ThrowsAny<Exception>(() => DistillJob.CachedQuestions(context, p with { Limit = 5 }, CancellationToken.None));
    }
}
