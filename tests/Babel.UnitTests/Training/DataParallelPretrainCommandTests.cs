using System.Text.Json.Nodes;
using Babel.Storage.Corpora;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Training;

/// <summary>
/// <c>babel pretrain --data-parallel 2</c> on the embedded engine: two ranks on two workers give the bytes of the same job
/// on one worker (which starts alone after the form timeout and accumulates both micro-batches), in the layout of a
/// one-rank run, whose training it follows closely.
/// </summary>
public class DataParallelPretrainCommandTests
{
    private static string Corpus(ScratchFolder scratch)
    {
        var corpus = scratch.Combine("corpus");
        var texts = new Dictionary<string, IReadOnlyList<CorpusDocument>>
        {
            ["eng"] = [.. Enumerable.Range(0, 12).Select(i => new CorpusDocument($"d{i}", string.Join(' ', Enumerable.Repeat($"the cat number {i} sat on the mat and looked at {i * 7} birds", 3))))],
            ["fra"] = [.. Enumerable.Range(0, 12).Select(i => new CorpusDocument($"d{i}", string.Join(' ', Enumerable.Repeat($"le chat numéro {i} est sur le tapis et regarde {i * 7} oiseaux", 3))))],
        };
        CorpusWriter.Write(corpus, new CorpusManifest("t", "t", "MIT",
            [new("eng", "English", "Latin", "Indo-European", "t", "MIT"), new("fra", "French", "Latin", "Indo-European", "t", "MIT")],
            new CorpusSplitManifest(["d0", "d1"], "two documents held out")), texts);
        return corpus;
    }

    private static string[] Pretrain(string corpus, string output, params string[] more) =>
        ["pretrain", "--corpus", corpus, "--out", output, "--config", "tiny", "--steps", "12", "--batch-size", "8", "--sequence-length", "32",
            "--threads", "1", "--checkpoint-interval", "5", .. more];

    [Fact]
    public void Two_ranks_write_the_bytes_of_one_worker_in_the_layout_of_a_one_rank_run()
    {
        using var scratch = new ScratchFolder();
        var corpus = Corpus(scratch);
        var two = Run(Pretrain(corpus, scratch.Combine("two"), "--data-parallel", "2", "--store", scratch.Combine("store-two"), "--lease-seconds", "6"));
        Assert.True(two.Code == 0, two.Error);
        Assert.Contains("2 data-parallel ranks", two.Output, StringComparison.Ordinal);
        var one = Run(Pretrain(corpus, scratch.Combine("one-worker"), "--data-parallel", "2", "--workers", "1", "--store", scratch.Combine("store-one"), "--lease-seconds", "6"));
        Assert.True(one.Code == 0, one.Error);
        var plain = Run(Pretrain(corpus, scratch.Combine("plain")));
        Assert.True(plain.Code == 0, plain.Error);

        Assert.Equal(File.ReadAllBytes(scratch.Combine("one-worker/model.safetensors")), File.ReadAllBytes(scratch.Combine("two/model.safetensors")));
        static string[] Files(string folder) => [.. Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(Files(scratch.Combine("plain")), Files(scratch.Combine("two")));
        foreach (var file in new[] { "tokenizer.json", "config.json" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(scratch.Combine("plain"), file)), File.ReadAllBytes(Path.Combine(scratch.Combine("two"), file)));
        }
        var manifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("two/training.json")))!;
        var plainManifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("plain/training.json")))!;
        // The corpus is named by the folder it was uploaded from, as the one-rank run names it.
        Assert.Equal((string?)plainManifest["data"]!["corpus"], (string?)manifest["data"]!["corpus"]);
        Assert.Equal(plainManifest["data"]!["trainTokens"]!.ToJsonString(), manifest["data"]!["trainTokens"]!.ToJsonString());
        Assert.Equal(12, (int)manifest["steps"]!);
        var history = TrainingHistoryTests.ReadHistory(scratch.Combine("two"));
        var plainHistory = TrainingHistoryTests.ReadHistory(scratch.Combine("plain"));
        Assert.Equal(Enumerable.Range(1, 12), history.Select(h => h.Step));
        // Two micro-batches instead of one forward: the same first loss, and the same training to float noise.
        Assert.Equal(plainHistory[0].Loss, history[0].Loss, 4);
        Assert.True(Math.Abs(plainHistory[^1].Loss - history[^1].Loss) < 0.02, $"final loss {history[^1].Loss} vs one rank's {plainHistory[^1].Loss}");
    }

    [Fact]
    public void Finetune_on_two_ranks_writes_the_bytes_of_one_worker_and_names_its_inputs_as_a_one_rank_run()
    {
        using var scratch = new ScratchFolder();
        var corpus = Corpus(scratch);
        var pretrained = Run(Pretrain(corpus, scratch.Combine("base")));
        Assert.True(pretrained.Code == 0, pretrained.Error);
        var instructions = scratch.Combine("instructions.jsonl");
        File.WriteAllLines(instructions, Enumerable.Range(0, 20).Select(i =>
            System.Text.Json.JsonSerializer.Serialize(new { instruction = $"Translate into French: the cat number {i}", response = $"le chat numéro {i}" })));
        string[] Finetune(string output, params string[] more) =>
            ["finetune", "--model", scratch.Combine("base"), "--instructions", instructions, "--out", output, "--steps", "8", "--batch-size", "8",
                "--sequence-length", "64", "--threads", "1", "--checkpoint-interval", "4", .. more];
        var two = Run(Finetune(scratch.Combine("two"), "--data-parallel", "2", "--store", scratch.Combine("store-two"), "--lease-seconds", "6"));
        Assert.True(two.Code == 0, two.Error);
        var one = Run(Finetune(scratch.Combine("one-worker"), "--data-parallel", "2", "--workers", "1", "--store", scratch.Combine("store-one"), "--lease-seconds", "6"));
        Assert.True(one.Code == 0, one.Error);
        var plain = Run(Finetune(scratch.Combine("plain")));
        Assert.True(plain.Code == 0, plain.Error);

        Assert.Equal(File.ReadAllBytes(scratch.Combine("one-worker/model.safetensors")), File.ReadAllBytes(scratch.Combine("two/model.safetensors")));
        static string[] Files(string folder) => [.. Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(Files(scratch.Combine("plain")), Files(scratch.Combine("two")));
        var manifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("two/training.json")))!;
        var plainManifest = JsonNode.Parse(File.ReadAllText(scratch.Combine("plain/training.json")))!;
        Assert.Equal((string?)plainManifest["baseModel"], (string?)manifest["baseModel"]);
        Assert.Equal(plainManifest["data"]!.ToJsonString(), manifest["data"]!.ToJsonString());
        // The response loss of the base model is measured alike; after tuning the two runs agree to float noise.
        Assert.Equal((double)plainManifest["responseLoss"]!["before"]!, (double)manifest["responseLoss"]!["before"]!, 6);
        Assert.True(Math.Abs((double)plainManifest["responseLoss"]!["after"]! - (double)manifest["responseLoss"]!["after"]!) < 0.02);

        // DiLoCo on the finetune job: the same layout, its options recorded, and a tuned model that differs from the synchronous one.
        var local = Run(Finetune(scratch.Combine("diloco"), "--data-parallel", "2", "--sync-every", "3", "--store", scratch.Combine("store-diloco"), "--lease-seconds", "6"));
        Assert.True(local.Code == 0, local.Error);
        Assert.Equal(Files(scratch.Combine("plain")), Files(scratch.Combine("diloco")));
        Assert.Equal(3, (int)JsonNode.Parse(File.ReadAllText(scratch.Combine("diloco/training.json")))!["options"]!["SyncEvery"]!);
        Assert.NotEqual(File.ReadAllBytes(scratch.Combine("two/model.safetensors")), File.ReadAllBytes(scratch.Combine("diloco/model.safetensors")));
    }

    [Fact]
    public void DiLoCo_on_two_ranks_writes_the_one_rank_layout_with_its_options_and_checkpoints_at_synchronisations()
    {
        using var scratch = new ScratchFolder();
        var corpus = Corpus(scratch);
        var store = scratch.Combine("store");
        var result = Run(Pretrain(corpus, scratch.Combine("diloco"), "--data-parallel", "2", "--sync-every", "5", "--outer-lr", "0.5", "--store", store, "--lease-seconds", "6"));
        Assert.True(result.Code == 0, result.Error);
        var plain = Run(Pretrain(corpus, scratch.Combine("plain")));
        Assert.True(plain.Code == 0, plain.Error);
        static string[] Files(string folder) => [.. Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(Files(scratch.Combine("plain")), Files(scratch.Combine("diloco")));
        var options = JsonNode.Parse(File.ReadAllText(scratch.Combine("diloco/training.json")))!["options"]!;
        Assert.Equal(5, (int)options["SyncEvery"]!);
        Assert.Equal(0.5, (double)options["OuterLearningRate"]!);
        Assert.Equal(0.9, (double)options["OuterMomentum"]!);
        var history = TrainingHistoryTests.ReadHistory(scratch.Combine("diloco"));
        Assert.Equal(Enumerable.Range(1, 12), history.Select(h => h.Step));
        // Every step's loss is the global batch's (the ranks' shares summed at the next synchronisation): the first one is the one-rank run's.
        Assert.Equal(TrainingHistoryTests.ReadHistory(scratch.Combine("plain"))[0].Loss, history[0].Loss, 4);
        Assert.True(history[^1].Loss < history[0].Loss - 0.5, $"loss went from {history[0].Loss} to {history[^1].Loss}");
        // 12 steps with H = 5: rounds of 5, 5 and 2 steps through the reduce grain, the checkpoints (5, 10, 12) carrying every
        // rank's state; all deleted once the result was read.
        Assert.Single(Directory.GetFiles(store, "model.zip", SearchOption.AllDirectories));
        Assert.Empty(Directory.GetFiles(store, "checkpoint-*.zip", SearchOption.AllDirectories));
    }

    [Fact]
    public void Local_steps_without_ranks_are_one_sentence()
    {
        using var scratch = new ScratchFolder();
        var result = Run(["pretrain", "--corpus", Corpus(scratch), "--out", scratch.Combine("out"), "--steps", "2", "--sync-every", "4"]);
        Assert.Equal(2, result.Code);
        Assert.Contains("--sync-every needs --data-parallel", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_global_batch_smaller_than_the_ranks_is_one_sentence()
    {
        using var scratch = new ScratchFolder();
        var result = Run(["pretrain", "--corpus", Corpus(scratch), "--out", scratch.Combine("out"), "--steps", "2", "--batch-size", "2", "--data-parallel", "3",
            "--store", scratch.Combine("store")]);
        Assert.Equal(2, result.Code);
        Assert.Contains("--batch-size of at least 3", result.Error, StringComparison.Ordinal);
    }
}
