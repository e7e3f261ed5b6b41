using System.Text.Json.Nodes;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.Storage.Corpora;
using Babel.UnitTests.Transformer;
using Xunit;
using static Babel.UnitTests.CliRun;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

/// <summary>Instruction tuning: the response-only loss, its batches, <c>babel finetune</c> and <c>babel data instructions</c>.</summary>
public class InstructionTuningTests
{
    [Fact]
    public void Masked_loss_equals_a_naive_mean_over_response_positions()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var generator = new Generator(9);
        var logits = randn([2, 5, 7], generator: generator);
        long[] targets = [-100, -100, 3, 6, 0, -100, 2, 2, -100, -100];
        var loss = Pretrainer.Loss(logits, tensor(targets, [2, 5])).item<float>();

        var values = logits.data<float>().ToArray();
        double sum = 0;
        var count = 0;
        for (var position = 0; position < targets.Length; position++)
        {
            if (targets[position] == -100) continue;
            var row = values.Skip(position * 7).Take(7).Select(v => (double)v).ToArray();
            var logSumExp = Math.Log(row.Sum(Math.Exp));
            sum += logSumExp - row[targets[position]];
            count++;
        }
        Assert.Equal(sum / count, loss, 5);
    }

    private static ByteLevelBpeModel Tokenizer() =>
        ByteLevelBpeTrainer.Train(["Translate into French: the cat sat on the mat", "le chat est assis sur le tapis", "Translate into German: der Hund"], 300, minFrequency: 1);

    [Fact]
    public void Batches_mask_the_prompt_and_the_padding_and_prompt_logits_get_no_gradient()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var directory = Directory.CreateTempSubdirectory("babel-tok-");
        try
        {
            Tokenizer().Save(directory.FullName);
            using var tokenizer = HuggingFaceTokenizer.Load(directory.FullName);
            var short_ = InstructionTuning.Tokenize(tokenizer, new InstructionExample("Translate into French: the cat", "le chat"));
            var long_ = InstructionTuning.Tokenize(tokenizer, new InstructionExample("Translate into French: the cat sat on the mat", "le chat est assis sur le tapis"));
            Assert.Equal(tokenizer.BosId, short_.Tokens[0]);
            Assert.Equal(tokenizer.EosId, short_.Tokens[^1]);
            Assert.Equal(1 + tokenizer.Encode("Translate into French: the cat\n").Length, short_.PromptLength);

            var (inputs, targets) = InstructionTuning.Batch([short_, long_], padId: 2);
            var width = long_.Tokens.Length - 1;
            Assert.Equal(new long[] { 2, width }, inputs.shape);
            var t = targets.data<long>().ToArray();
            var x = inputs.data<long>().ToArray();
            for (var position = 0; position < width; position++)
            {
                // Row 0: prompt positions and padding are ignored; response positions predict the next token.
                var expected = position + 1 < short_.PromptLength || position + 1 >= short_.Tokens.Length ? -100 : short_.Tokens[position + 1];
                Assert.Equal(expected, t[position]);
                Assert.Equal(position < short_.Tokens.Length - 1 ? short_.Tokens[position] : 2, x[position]);
            }
            // Exactly the response tokens and EOS are targets.
            Assert.Equal(short_.Tokens.Length - short_.PromptLength, t.Take(width).Count(v => v != -100));
            Assert.Equal(long_.Tokens.Length - long_.PromptLength, t.Skip(width).Count(v => v != -100));

            // The loss's gradient reaches the response logits only: prompt tokens contribute nothing.
            var logits = randn([2, width, tokenizer.VocabSize], generator: new Generator(3)).requires_grad_(true);
            Pretrainer.Loss(logits, targets).backward();
            var gradient = logits.grad!.abs().sum(2).data<float>().ToArray();
            for (var position = 0; position < 2 * width; position++)
            {
                Assert.True(t[position] == -100 ? gradient[position] == 0 : gradient[position] > 0, $"position {position}");
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public void Batch_indices_are_a_pure_function_of_seed_and_step()
    {
        Assert.Equal(InstructionTuning.BatchIndices(50, 4, 7, 8), InstructionTuning.BatchIndices(50, 4, 7, 8));
        Assert.NotEqual(InstructionTuning.BatchIndices(50, 4, 7, 8), InstructionTuning.BatchIndices(50, 4, 8, 8));
        Assert.All(InstructionTuning.BatchIndices(5, 1, 0, 100), i => Assert.InRange(i, 0, 4));
    }

    private static string WriteModel(ScratchFolder scratch)
    {
        var directory = scratch.Combine("model");
        Tokenizer().Save(directory);
        using var tokenizer = HuggingFaceTokenizer.Load(directory);
        var config = TinyModels.Config() with { VocabSize = tokenizer.VocabSize, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId, PadTokenId = tokenizer.PadId };
        Modeling.Runtime.TorchRuntime.Initialize(1);
        using var model = new CausalLanguageModel(config);
        model.InitializeWeights(2);
        ModelCheckpoint.Save(directory, config, model.StateDict());
        File.WriteAllText(Path.Combine(directory, "experts.json"), "{\"marker\": 1}\n");
        return directory;
    }

    [Fact]
    public void Finetune_lowers_the_response_loss_and_keeps_tokenizer_and_experts()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var instructions = scratch.Combine("instructions.jsonl");
        File.WriteAllLines(instructions,
        [
            "{\"instruction\": \"Translate into French: the cat sat on the mat\", \"response\": \"le chat est assis sur le tapis\"}",
            "{\"instruction\": \"Translate into French: the cat\", \"response\": \"le chat\"}",
            "",
            "{\"instruction\": \"Translate into German: the dog\", \"response\": \"der Hund\", \"id\": \"x\"}",
        ]);
        var output = scratch.Combine("tuned");
        var (code, text, error) = Run("finetune", "--model", model, "--instructions", instructions, "--out", output, "--steps", "30", "--learning-rate", "1e-2", "--threads", "1");
        Assert.True(code == 0, error + text);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "training.json")))!;
        var before = manifest["responseLoss"]!["before"]!.GetValue<double>();
        var after = manifest["responseLoss"]!["after"]!.GetValue<double>();
        Assert.True(after < before - 1.0, $"response loss {before:F3} → {after:F3}");
        Assert.Equal(3, manifest["data"]!["used"]!.GetValue<int>());
        Assert.Equal(30, manifest["steps"]!.GetValue<int>());
        Assert.Equal(File.ReadAllText(Path.Combine(model, "experts.json")), File.ReadAllText(Path.Combine(output, "experts.json")));
        Assert.Equal(File.ReadAllText(Path.Combine(model, "tokenizer.json")), File.ReadAllText(Path.Combine(output, "tokenizer.json")));
        Assert.False(Directory.Exists(Path.Combine(output, "checkpoint")));
        using var tuned = CausalLanguageModel.Load(output);
        Assert.Equal(ModelConfig.Load(model), tuned.Config);
        Assert.Equal(Enumerable.Range(1, 30), TrainingHistoryTests.ReadHistory(output).Select(h => h.Step));
        TrainingHistoryTests.AssertPng(output);
    }

    [Fact]
    public void An_interrupted_tuning_resumes_with_a_history_of_every_step_once()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var instructions = scratch.Combine("instructions.jsonl");
        File.WriteAllLines(instructions,
        [
            "{\"instruction\": \"Translate into French: the cat\", \"response\": \"le chat\"}",
            "{\"instruction\": \"Translate into German: the dog\", \"response\": \"der Hund\"}",
        ]);
        var options = InstructionTuning.DefaultOptions with { Steps = 10, BatchSize = 2, CheckpointInterval = 4, Threads = 1 };
        var whole = InstructionTuning.Tune(model, instructions, scratch.Combine("whole"), options);

        using (var cancellation = new CancellationTokenSource())
        {
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 6) cancellation.Cancel(); });
            Assert.Throws<OperationCanceledException>(() => InstructionTuning.Tune(model, instructions, scratch.Combine("split"), options, progress, cancellationToken: cancellation.Token));
        }
        Assert.Equal([1, 2, 3, 4, 5, 6], TrainingHistoryTests.ReadHistory(scratch.Combine("split")).Select(h => h.Step));
        var resumed = InstructionTuning.Tune(model, instructions, scratch.Combine("split"), options);

        Assert.Equal(whole.ResponseLoss, resumed.ResponseLoss);
        var history = TrainingHistoryTests.ReadHistory(scratch.Combine("split"));
        Assert.Equal(Enumerable.Range(1, 10), history.Select(h => h.Step));
        Assert.Equal(TrainingHistoryTests.ReadHistory(scratch.Combine("whole")).Select(h => h.Loss), history.Select(h => h.Loss));
        TrainingHistoryTests.AssertPng(scratch.Combine("split"));
    }

    [Theory]
    [InlineData("{\"instruction\": \"x\"}", "line 1 lacks")]
    [InlineData("not json", "line 1 is not valid JSON")]
    public void Bad_instruction_files_are_one_sentence(string line, string expected)
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var instructions = scratch.Combine("bad.jsonl");
        File.WriteAllText(instructions, line + "\n");
        var (code, _, error) = Run("finetune", "--model", model, "--instructions", instructions, "--out", scratch.Combine("tuned"));
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        (code, _, error) = Run("finetune", "--model", model, "--instructions", scratch.Combine("missing.jsonl"), "--out", scratch.Combine("tuned"));
        Assert.Equal(2, code);
        Assert.Contains("does not exist", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Data_instructions_pairs_aligned_train_documents_line_by_line()
    {
        using var scratch = new ScratchFolder();
        var corpus = scratch.Combine("corpus");
        CorpusWriter.Write(corpus, new CorpusManifest("t", "t", "MIT",
            [new("eng", "English", "Latin", "Indo-European", "t", "MIT"), new("fra", "French", "Latin", "Indo-European", "t", "MIT")],
            new CorpusSplitManifest(["d3"], "d3 is held out")), new Dictionary<string, IReadOnlyList<CorpusDocument>>
            {
                ["eng"] = [new("d1", "one\ntwo"), new("d2", "three"), new("d3", "held out")],
                ["fra"] = [new("d1", "un\ndeux"), new("d2", "trois\net demi"), new("d3", "réservé")],
            });
        var output = scratch.Combine("instructions.jsonl");
        var (code, text, error) = Run("data", "instructions", "--corpus", corpus, "--out", output);
        Assert.True(code == 0, error);
        Assert.Contains("wrote 3 translation instructions", text, StringComparison.Ordinal);
        var lines = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["d1/fra/1", "d1/fra/2", "d2/fra"], lines.Select(l => l["id"]!.GetValue<string>()));
        Assert.Equal("Translate into French: two", lines[1]["instruction"]!.GetValue<string>());
        Assert.Equal("deux", lines[1]["response"]!.GetValue<string>());
        // Line counts differ: the whole document is one instruction.
        Assert.Equal("trois\net demi", lines[2]["response"]!.GetValue<string>());
        Assert.DoesNotContain(lines, l => l["response"]!.GetValue<string>() == "réservé");
        Assert.Equal(3, InstructionTuning.Read(output).Count);
    }
}
