using System.Text;
using System.Text.Json;
using Babel.Grains.Engine;
using Xunit;

namespace Babel.UnitTests.Jobs;

public class ShardBatchTests
{
    [Fact]
    public void A_batch_gives_back_each_shard_document_byte_for_byte()
    {
        // Documents as shards write them: compact JSON of any shape, numbers and escapes included.
        var documents = new List<(string, byte[])>
        {
            ("eng-000", Encoding.UTF8.GetBytes("{\"tokens\":12,\"counts\":[[1,2],[3,4]],\"loss\":1.2345678901234567}")),
            ("fra-001", Encoding.UTF8.GetBytes("[\"d\\u00e9j\\u00e0\",null,true,-0.5e-7]")),
            ("x", Encoding.UTF8.GetBytes("42")),
        };
        var batch = ShardBatch.Write(documents);
        using var parsed = JsonDocument.Parse(batch);
        foreach (var (shardId, document) in documents)
        {
            var reference = ShardBatch.Reference("jobs/j/batches/b.json", shardId);
            var (key, inBatch) = ShardBatch.Parse(reference);
            Assert.Equal("jobs/j/batches/b.json", key);
            Assert.Equal(shardId, inBatch);
            Assert.Equal(document, ShardBatch.Read(parsed, key, inBatch!));
        }
        Assert.Equal(("jobs/j/shards/a/1.json", (string?)null), ShardBatch.Parse("jobs/j/shards/a/1.json"));
        var missing = Assert.Throws<InvalidDataException>(() => ShardBatch.Read(parsed, "jobs/j/batches/b.json", "deu-002"));
        Assert.Contains("no document for shard deu-002", missing.Message, StringComparison.Ordinal);
    }
}
