using System.Text.Json.Nodes;
using Babel.Modeling.Chat;
using Babel.Modeling.Distillation;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Distillation;

/// <summary><c>babel distill generate</c> with a local teacher (a tiny random model: its answers are garbage, counted as unparseable).</summary>
public class DistillLocalTeacherTests
{
    internal static string WriteMathDataset(ScratchFolder scratch, int questions = 3)
    {
        var file = scratch.Combine("math.jsonl");
        File.WriteAllLines(file, Enumerable.Range(1, questions).Select(i => $$"""{"id": "m{{i}}", "question": "What is {{i}} plus {{i}}?", "answer": "{{2 * i}}"}"""));
        return file;
    }

    [Fact]
    public async Task Local_generation_depends_on_the_seed_of_each_row_not_on_the_batch()
    {
        using var scratch = new ScratchFolder();
        var (modelFolder, _) = JobTestInputs.Write(scratch);
        using var model = CausalLanguageModel.Load(modelFolder);
        using var tokenizer = HuggingFaceTokenizer.Load(modelFolder);
        TeacherRequest Request(string prompt, long seed) => new(prompt, 1.0, 1.0, 12, seed, []);
        using var teacher = new LocalTeacher(model, tokenizer, PromptFormat.Load(modelFolder, model.Config, tokenizer), "m", batchSize: 8);
        var alone = await teacher.CompleteAsync([Request("the cat", 5)], CancellationToken.None);
        var together = await teacher.CompleteAsync([Request("le chat numéro", 9), Request("the cat", 5), Request("the cat", 6)], CancellationToken.None);
        Assert.Equal(alone[0].Completion!.Text, together[1].Completion!.Text);
        Assert.Equal(alone[0].Completion!.CompletionTokens, together[1].Completion!.CompletionTokens);
        // Another seed samples another continuation (12 tokens from a 300-token vocabulary at temperature 1).
        Assert.NotEqual(together[1].Completion!.Text, together[2].Completion!.Text);
    }

    [Fact]
    public async Task A_local_teacher_job_writes_every_record_and_a_rerun_calls_the_teacher_for_nothing()
    {
        using var scratch = new ScratchFolder();
        var (model, _) = JobTestInputs.Write(scratch);
        var dataset = WriteMathDataset(scratch);
        var store = scratch.Combine("store");
        string[] Args(string output, params string[] extra) =>
        [
            "distill", "generate", "--teacher", "local:" + model, "--dataset", "jsonl:" + dataset, "--task", "math",
            "--cots", "2", "--evals", "2", "--max-new-tokens", "6", "--seed", "11", "--questions-per-shard", "2", "--out", output, "--store", store, .. extra,
        ];
        var first = scratch.Combine("out1");
        var (code, output, error) = Run(Args(first, "--parquet"));
        Assert.True(code == 0, error);
        Assert.Contains("6 chains of thought", output, StringComparison.Ordinal);

        var cots = File.ReadAllLines(Path.Combine(first, "cots.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["m1/cot0", "m1/cot1", "m2/cot0", "m2/cot1", "m3/cot0", "m3/cot1"], cots.Select(c => (string)c["id"]!));
        Assert.Equal(["2", "2", "4", "4", "6", "6"], cots.Select(c => (string)c["gold_answer"]!));
        Assert.All(cots, c => Assert.Equal(c["answer"] is null ? null : (bool?)((string)c["answer"]! == (string)c["gold_answer"]!), (bool?)c["correct"]));
        var evaluations = File.ReadAllLines(Path.Combine(first, "evaluations.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(12, evaluations.Count);
        Assert.Equal(evaluations.Count, evaluations.Select(e => (string)e["id"]!).Distinct().Count());
        Assert.Equal(2, Directory.GetFiles(Path.Combine(first, "raw")).Length);
        Assert.Equal(18, Directory.GetFiles(Path.Combine(first, "raw")).Sum(f => File.ReadAllLines(f).Length));

        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(first, "manifest.json")))!;
        var counts = manifest["counts"]!;
        Assert.Equal(6, (long)counts["cots"]!);
        Assert.Equal(6, (long)counts["cots_parsed"]! + (long)counts["cots_unparseable"]!);
        Assert.Equal(12, (long)counts["evaluations"]!);
        Assert.Equal(12, (long)counts["evaluations_parsed"]! + (long)counts["evaluations_unparseable"]!);
        Assert.Equal(18, (long)manifest["teacher_calls"]!);
        Assert.Equal(0, (long)manifest["cache_hits"]!);
        Assert.Equal(PromptTemplates.For(DistillationTask.Math).ChainOfThought.Sha256, (string)manifest["templates"]!["cot"]!["sha256"]!);
        Assert.True((long)manifest["tokens_out"]! > 0);

        // The Parquet export holds the same rows, under the JSONL field names.
        using (var stream = File.OpenRead(Path.Combine(first, "cots.parquet")))
        {
            var read = await Parquet.Serialization.ParquetSerializer.DeserializeAsync<Babel.Storage.DistillationParquet.CotRow>(stream);
            var rows = read.Data;
            Assert.Contains("question_id", read.Schema.GetDataFields().Select(f => f.Name));
            Assert.Equal(cots.Select(c => (string)c["id"]!), rows.Select(r => r.Id));
            Assert.Equal(cots.Select(c => (string)c["cot"]!), rows.Select(r => r.Cot));
            Assert.Equal(cots.Select(c => (bool?)c["correct"]), rows.Select(r => r.Correct));
        }
        using (var stream = File.OpenRead(Path.Combine(first, "evaluations.parquet")))
        {
            var rows = (await Parquet.Serialization.ParquetSerializer.DeserializeAsync<Babel.Storage.DistillationParquet.EvaluationRow>(stream)).Data;
            Assert.Equal(evaluations.Select(e => (string?)e["label"]), rows.Select(r => r.Label));
        }

        // Another job id runs every shard again: every call is answered by the cache, and the records are the same bytes.
        var second = scratch.Combine("out2");
        (code, _, error) = Run(Args(second, "--job-id", "distill-again"));
        Assert.True(code == 0, error);
        var again = JsonNode.Parse(File.ReadAllText(Path.Combine(second, "manifest.json")))!;
        Assert.Equal(0, (long)again["teacher_calls"]!);
        Assert.Equal(18, (long)again["cache_hits"]!);
        Assert.Equal(File.ReadAllText(Path.Combine(first, "cots.jsonl")), File.ReadAllText(Path.Combine(second, "cots.jsonl")));
        Assert.Equal(File.ReadAllText(Path.Combine(first, "evaluations.jsonl")), File.ReadAllText(Path.Combine(second, "evaluations.jsonl")));

        // The student side reads the folder as written: every chain of thought with its own evaluations.
        var test = scratch.Combine("test.jsonl");
        File.WriteAllText(test, """{"id": "t1", "question": "What is 5 + 5?", "answer": "10"}""" + "\n");
        var corpus = StudentCorpus.Load(first, "jsonl:" + test);
        Assert.Equal(["m1", "m2", "m3"], corpus.Train.Select(q => q.Question.Id));
        Assert.Equal(cots.Select(c => (string)c["cot"]!), corpus.Train.SelectMany(q => q.Cots.Select(c => c.Cot)));
        Assert.Equal(evaluations.Select(e => (string?)e["label"]), corpus.Train.SelectMany(q => q.Cots.SelectMany(c => c.Evaluations.Select(e => e.Label))));
        Assert.Equal("10", Assert.Single(corpus.Test).Gold);
    }
}

/// <summary>A shard's async pipeline stays on the worker's thread.</summary>
public class WorkerThreadContextTests
{
    [Fact]
    public void Continuations_run_on_the_calling_thread_while_io_runs_elsewhere()
    {
        var threads = new List<int>();
        var pools = new List<int>();
        var (caller, result) = (0, 0);
        var thread = new Thread(() =>
        {
            caller = Environment.CurrentManagedThreadId;
            result = Babel.Grains.Distillation.WorkerThreadContext.Run(async () =>
            {
                for (var i = 0; i < 3; i++)
                {
                    pools.Add(await Task.Run(() => Environment.CurrentManagedThreadId));
                    threads.Add(Environment.CurrentManagedThreadId);
                }
                return 42;
            });
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(42, result);
        Assert.DoesNotContain(caller, pools);
        Assert.Equal([caller, caller, caller], threads);
    }
}
