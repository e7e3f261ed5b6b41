using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Storage.Artifacts;

namespace Babel.Modeling.Distillation;

/// <summary>A teacher call as stored in the cache and the raw log: what was asked, of whom, and the answer.</summary>
public sealed record TeacherExchange(string Key, string Teacher, int Sample, TeacherRequest Request, TeacherCompletion Response);

/// <summary>
/// Every teacher answer, in the artifact store under the SHA-256 of (teacher, prompt, sampling parameters, seed, sample
/// index), so a rerun, a resumed job or a retried shard never pays for the same call twice. Only successes are cached:
/// a call that failed is tried again next time.
/// </summary>
public sealed class TeacherCache(IArtifactStore store, string prefix = "distill/cache")
{
    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static string Key(string teacher, TeacherRequest request, int sample)
    {
        var canonical = new JsonObject
        {
            ["teacher"] = teacher,
            ["prompt"] = request.Prompt,
            ["temperature"] = request.Temperature,
            ["top_p"] = request.TopP,
            ["max_tokens"] = request.MaxTokens,
            ["stop"] = new JsonArray([.. request.Stop.Select(s => (JsonNode)s)]),
            ["seed"] = request.Seed,
            ["sample"] = sample,
        }.ToJsonString();
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)));
    }

    private string StoreKey(string key) => $"{prefix}/{key[..2]}/{key}.json";

    public async Task<TeacherExchange?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var bytes = await store.GetBytesAsync(StoreKey(key), cancellationToken);
        return bytes is null ? null : JsonSerializer.Deserialize<TeacherExchange>(bytes, Json);
    }

    public Task PutAsync(TeacherExchange exchange, CancellationToken cancellationToken) =>
        store.PutBytesAsync(StoreKey(exchange.Key), JsonSerializer.SerializeToUtf8Bytes(exchange, Json), cancellationToken);
}
