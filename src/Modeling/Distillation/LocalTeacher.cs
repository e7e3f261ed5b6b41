using System.Diagnostics;
using Babel.Modeling.Chat;
using Babel.Modeling.Generation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;

namespace Babel.Modeling.Distillation;

/// <summary>
/// A model folder as teacher: requests with the same sampling parameters are generated together in batches of
/// <paramref name="batchSize"/> with the KV cache, each row from its own generator seeded with the request's seed, so a
/// sample depends on (prompt, parameters, seed) and not on which other requests shared its batch. A request's prompt is
/// one user message, prompted as <c>babel serve</c> prompts a chat completion (<paramref name="format"/>: the folder's chat
/// template with the generation prompt, else BOS and the text); a row ends at any of the format's EOS ids, which is not
/// part of the text. A prompt longer than the context leaves room for the completion by keeping its last tokens (and its
/// BOS). Stop strings cut the decoded text. Runs on the calling thread; the model and tokenizer belong to the caller.
/// </summary>
public sealed class LocalTeacher(CausalLanguageModel model, ITokenizer tokenizer, PromptFormat format, string modelIdentity, int batchSize = 8) : ITeacher
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
        var prompts = batch.Select(r => Fit(Prompt(r), room)).ToList();
        var options = new SamplingOptions
        {
            MaxNewTokens = maxNew,
            Temperature = first.Temperature,
            TopP = first.TopP,
            RowSeeds = [.. batch.Select(r => r.Seed)],
            EosTokenIds = format.StopTokenIds,
        };
        var stopwatch = Stopwatch.StartNew();
        var generated = TextGenerator.Generate(model, prompts, options, padId: model.Config.PadTokenId ?? tokenizer.PadId);
        DistillationMetrics.Latency.Record(stopwatch.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("teacher", "local"));
        var completions = new List<TeacherCompletion>(batch.Count);
        for (var row = 0; row < batch.Count; row++)
        {
            var ids = generated[row];
            var ended = ids.Length > 0 && format.StopTokenIds.Contains(ids[^1]);
            // The id that ended the row is not part of the text (an instruction model's second EOS may be an ordinary token).
            var text = tokenizer.Decode(ended ? ids.AsSpan(0, ids.Length - 1) : ids);
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

    /// <summary>The ids the model is prompted with for <paramref name="request"/> before any cut to the context: its prompt as one user message.</summary>
    public int[] Prompt(TeacherRequest request) => format.UserMessage(request.Prompt);

    /// <summary>The end of <paramref name="ids"/> (where the question and the generation prompt are) in <paramref name="room"/> tokens, BOS kept.</summary>
    private int[] Fit(int[] ids, int room)
    {
        if (ids.Length <= room) return ids;
        var bos = ids[0] == model.Config.BosTokenId ? 1 : 0;
        return [.. ids.AsSpan(0, bos), .. ids.AsSpan(ids.Length - (room - bos))];
    }

    public void Dispose()
    {
        // The model and tokenizer belong to the caller (a worker's model cache).
    }
}
