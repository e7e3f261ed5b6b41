using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Babel.Modeling.Distillation;

/// <summary>Sampling settings of a distillation run.</summary>
public sealed record DistillationSettings(
    DistillationTask Task, int Cots = 5, int Evaluations = 5, double Temperature = 0.7, double TopP = 1.0, int MaxNewTokens = 256, long Seed = 0)
{
    /// <summary>A few-shot prompt's next "Q:" ends the answer.</summary>
    public static readonly IReadOnlyList<string> Stop = ["\n\nQ:", "\nQ:"];
}

/// <summary>
/// The teacher side of self-evaluation distillation ("Mind's Mirror"): per question, <see cref="DistillationSettings.Cots"/>
/// chains of thought sampled from the teacher, each parsed for its answer and compared with the gold answer; then per
/// chain <see cref="DistillationSettings.Evaluations"/> self-evaluations, each parsed for its label. Every call goes through
/// the <see cref="TeacherCache"/> first. Unparseable answers and evaluations are kept and counted; failed calls are listed.
/// </summary>
public sealed class DistillationGenerator(ITeacher teacher, TeacherCache cache, PromptTemplates templates, DistillationSettings settings)
{
    public const string CotRole = "cot";
    public const string EvaluationRole = "evaluation";

    /// <summary>The seed of one call: a hash of the run's seed and the call's place, so each sample has its own stream.</summary>
    public static long SampleSeed(long seed, string questionId, string role, int cotSample, int sample)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}\n{questionId}\n{role}\n{cotSample}\n{sample}"));
        // 31 bits: every OpenAI-compatible server accepts such a seed.
        return BinaryPrimitives.ReadInt64LittleEndian(hash) & int.MaxValue;
    }

    public async Task<DistillationOutput> RunAsync(IReadOnlyList<DistillationQuestion> questions, CancellationToken cancellationToken)
    {
        var totals = new SortedDictionary<string, long>(StringComparer.Ordinal);
        void Add(string name, long value = 1) => totals[name] = totals.GetValueOrDefault(name) + value;
        var failures = new List<DistillationFailure>();
        var raw = new List<RawExchange>();
        Add("questions", questions.Count);

        var cotCalls = questions.SelectMany(q => Enumerable.Range(0, settings.Cots).Select(s => new Call(q, CotRole, s, s, Request(templates.ChainOfThought.Fill(q), q.Id, CotRole, s, s)))).ToList();
        var cotAnswers = await CallAsync(cotCalls, raw, failures, totals, cancellationToken);
        var cots = new List<CotRecord>();
        var evaluationCalls = new List<Call>();
        for (var i = 0; i < cotCalls.Count; i++)
        {
            if (cotAnswers[i] is not { } exchange) continue;
            var call = cotCalls[i];
            var q = call.Question;
            var answer = AnswerParser.ParsePrediction(settings.Task, exchange.Response.Text, q.Choices);
            var gold = AnswerParser.ParseGold(settings.Task, q.Gold, q.Choices);
            bool? correct = answer is null || gold is null ? null : answer == gold;
            var id = $"{q.Id}/cot{call.Sample}";
            cots.Add(new CotRecord(id, q.Id, call.Sample, q.Question, q.Choices, exchange.Response.Text, answer, q.Gold, gold, correct, exchange.Key));
            Add("cots");
            Add(answer is null ? "cots_unparseable" : "cots_parsed");
            if (correct == true) Add("cots_correct");
            if (gold is null) Add("gold_unparseable");
            for (var e = 0; e < settings.Evaluations; e++)
            {
                evaluationCalls.Add(new Call(q, EvaluationRole, call.Sample, e,
                    Request(templates.Evaluation.Fill(q, exchange.Response.Text), q.Id, EvaluationRole, call.Sample, e)));
            }
        }
        DistillationMetrics.RecordsWritten.Add(cots.Count, new KeyValuePair<string, object?>("kind", "cot"));

        var evaluationAnswers = await CallAsync(evaluationCalls, raw, failures, totals, cancellationToken);
        var evaluations = new List<EvaluationRecord>();
        for (var i = 0; i < evaluationCalls.Count; i++)
        {
            if (evaluationAnswers[i] is not { } exchange) continue;
            var call = evaluationCalls[i];
            var label = SelfEvaluation.Parse(exchange.Response.Text);
            var cotId = $"{call.Question.Id}/cot{call.CotSample}";
            evaluations.Add(new EvaluationRecord($"{cotId}/eval{call.Sample}", cotId, call.Question.Id, call.CotSample, call.Sample, exchange.Response.Text, label?.Name(), exchange.Key));
            Add("evaluations");
            Add(label is null ? "evaluations_unparseable" : "evaluations_parsed");
            if (label is { } parsed) Add("evaluations_" + parsed.Name());
        }
        DistillationMetrics.RecordsWritten.Add(evaluations.Count, new KeyValuePair<string, object?>("kind", "evaluation"));
        return new DistillationOutput(cots, evaluations, failures, raw, totals);
    }

    private TeacherRequest Request(string prompt, string questionId, string role, int cotSample, int sample) =>
        new(prompt, settings.Temperature, settings.TopP, settings.MaxNewTokens, SampleSeed(settings.Seed, questionId, role, cotSample, sample), DistillationSettings.Stop);

    /// <summary>Answers every call from the cache or the teacher (one batch for all misses); null where the teacher failed.</summary>
    private async Task<TeacherExchange?[]> CallAsync(IReadOnlyList<Call> calls, List<RawExchange> raw, List<DistillationFailure> failures,
        SortedDictionary<string, long> totals, CancellationToken cancellationToken)
    {
        var keys = calls.Select(c => TeacherCache.Key(teacher.Identity, c.Request, c.Sample)).ToArray();
        var answers = await Task.WhenAll(keys.Select(k => cache.GetAsync(k, cancellationToken)));
        var misses = Enumerable.Range(0, calls.Count).Where(i => answers[i] is null).ToList();
        var hits = calls.Count - misses.Count;
        totals["cache_hits"] = totals.GetValueOrDefault("cache_hits") + hits;
        DistillationMetrics.CacheHits.Add(hits);
        if (misses.Count > 0)
        {
            var results = await teacher.CompleteAsync([.. misses.Select(i => calls[i].Request)], cancellationToken);
            totals["teacher_calls"] = totals.GetValueOrDefault("teacher_calls") + misses.Count;
            var puts = new List<Task>();
            for (var j = 0; j < misses.Count; j++)
            {
                var i = misses[j];
                if (results[j].Completion is { } completion)
                {
                    var exchange = new TeacherExchange(keys[i], teacher.Identity, calls[i].Sample, calls[i].Request, completion);
                    puts.Add(cache.PutAsync(exchange, cancellationToken));
                    answers[i] = exchange;
                }
                else
                {
                    var call = calls[i];
                    failures.Add(new DistillationFailure(call.Question.Id, call.Role, call.CotSample, call.Sample, results[j].Error ?? "unknown error"));
                    totals[call.Role + "s_failed"] = totals.GetValueOrDefault(call.Role + "s_failed") + 1;
                }
            }
            // Written concurrently: each is its own object, and a local store syncs every file to disk.
            await Task.WhenAll(puts);
        }
        for (var i = 0; i < calls.Count; i++)
        {
            if (answers[i] is not { } exchange) continue;
            raw.Add(new RawExchange(calls[i].Question.Id, calls[i].Role, calls[i].CotSample, exchange));
            totals["tokens_in"] = totals.GetValueOrDefault("tokens_in") + exchange.Response.PromptTokens;
            totals["tokens_out"] = totals.GetValueOrDefault("tokens_out") + exchange.Response.CompletionTokens;
        }
        return answers;
    }

    private sealed record Call(DistillationQuestion Question, string Role, int CotSample, int Sample, TeacherRequest Request);
}
