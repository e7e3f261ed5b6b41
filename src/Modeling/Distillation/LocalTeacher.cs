using System.Diagnostics;
using Babel.Modeling.Generation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;

namespace Babel.Modeling.Distillation;

/// <summary>
/// A model folder as teacher: requests with the same sampling parameters are generated together in batches of
/// <paramref name="batchSize"/> with the KV cache, each row from its own generator seeded with the request's seed, so a
/// sample depends on (prompt, parameters, seed) and not on which other requests shared its batch. A prompt longer than the
/// context leaves room for the completion by keeping its last tokens (BOS first). Stop strings cut the decoded text.
/// Runs on the calling thread; the model and tokenizer belong to the caller.
/// </summary>
public sealed class LocalTeacher(CausalLanguageModel model, ITokenizer tokenizer, string modelIdentity, int batchSize = 8) : ITeacher
{
    public string Identity => $"local:{modelIdentity}";

    public Task<IReadOnlyList<TeacherResult>> CompleteAsync(IReadOnlyList<TeacherRequest> requests, CancellationToken cancellationToken)
    {
        var results = new TeacherResult[requests.Count];
        var groups = Enumerable.Range(0, requests.Count).GroupBy(i => (requests[i].Temperature, requests[i].TopP, requests[i].MaxTokens));
        foreach (var group in groups)
        {
            foreach (var chunk in group.Chunk(Math.Max(1, batchSize)))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = chunk.Select(i => requests[i]).ToList();
                var completions = Generate(batch);
                for (var j = 0; j < chunk.Length; j++) results[chunk[j]] = new TeacherResult(completions[j], null);
            }
        }
        return Task.FromResult<IReadOnlyList<TeacherResult>>(results);
    }

    private List<TeacherCompletion> Generate(IReadOnlyList<TeacherRequest> batch)
    {
        var first = batch[0];
        var maxNew = Math.Min(first.MaxTokens, model.Config.MaxPositionEmbeddings - 1);
        var room = model.Config.MaxPositionEmbeddings - maxNew;
        var prompts = batch.Select(r =>
        {
            var ids = tokenizer.Encode(r.Prompt);
            // Keep BOS and the end of the prompt (where the question is) when the whole does not fit.
            var keep = Math.Min(ids.Length, room - 1);
            return (int[])[model.Config.BosTokenId, .. ids.AsSpan(ids.Length - keep)];
        }).ToList();
        var options = new SamplingOptions
        {
            MaxNewTokens = maxNew,
            Temperature = first.Temperature,
            TopP = first.TopP,
            RowSeeds = [.. batch.Select(r => r.Seed)],
        };
        var stopwatch = Stopwatch.StartNew();
        var generated = TextGenerator.Generate(model, prompts, options, padId: model.Config.PadTokenId ?? tokenizer.PadId);
        DistillationMetrics.Latency.Record(stopwatch.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("teacher", "local"));
        var completions = new List<TeacherCompletion>(batch.Count);
        for (var row = 0; row < batch.Count; row++)
        {
            var ids = generated[row];
            var ended = ids.Length > 0 && ids[^1] == model.Config.EosTokenId;
            var text = tokenizer.Decode(ids);
            var stopped = false;
            foreach (var stop in batch[row].Stop)
            {
                var at = text.IndexOf(stop, StringComparison.Ordinal);
                if (at >= 0)
                {
                    text = text[..at];
                    stopped = true;
                }
            }
            completions.Add(new TeacherCompletion(text, prompts[row].Length, ids.Length, stopped || ended ? "stop" : "length"));
            DistillationMetrics.TokensIn.Add(prompts[row].Length);
            DistillationMetrics.TokensOut.Add(ids.Length);
        }
        DistillationMetrics.TeacherRequests.Add(batch.Count, [new("teacher", "local"), new("outcome", "ok")]);
        return completions;
    }

    public void Dispose()
    {
        // The model and tokenizer belong to the caller (a worker's model cache).
    }
}
