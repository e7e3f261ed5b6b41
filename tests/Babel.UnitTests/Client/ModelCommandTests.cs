using System.Text;
using System.Text.Json.Nodes;
using Babel.Client;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Storage.Corpora;
using Babel.UnitTests.Corpora;
using Babel.UnitTests.Transformer;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Client;

/// <summary>The model commands end to end through <see cref="BabelCli"/>: outputs, and one clear sentence with exit code 2 for bad input.</summary>
public class ModelCommandTests
{
    /// <summary>A small random model with a tokenizer trained on a few sentences.</summary>
    private static string WriteModel(ScratchFolder scratch)
    {
        var directory = scratch.Combine("model");
        var tokenizer = ByteLevelBpeTrainer.Train(["the cat sat on the mat", "le chat est sur le tapis", "der Hund"], 300, minFrequency: 1);
        tokenizer.Save(directory);
        var config = TinyModels.Config() with { VocabSize = tokenizer.VocabSize, BosTokenId = 0, EosTokenId = 1, PadTokenId = 2 };
        using var model = TinyModels.Create(config);
        ModelCheckpoint.Save(directory, config, model.StateDict());
        return directory;
    }

    private static string WriteCorpus(ScratchFolder scratch)
    {
        var directory = scratch.Combine("corpus");
        var manifest = new CorpusManifest("test", "test", "MIT",
            [new CorpusLanguage("eng", "English", "Latin", "Indo-European / Germanic", "test", "MIT")],
            new CorpusSplitManifest(["d2"], "d2 is held out"));
        CorpusWriter.Write(directory, manifest, new Dictionary<string, IReadOnlyList<CorpusDocument>>
        {
            ["eng"] = [new("d1", "the cat sat on the mat"), new("d2", "the mat sat on the cat")],
        });
        return directory;
    }

    [Fact]
    public void Generate_as_json_gives_the_prompt_ids_and_only_the_generated_ids()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var (code, output, error) = Run("generate", "--model", model, "--prompt-ids", "0,5,9", "--max-new-tokens", "6", "--format", "json");
        Assert.True(code == 0, error);
        var json = JsonNode.Parse(output)!.AsObject();
        Assert.Equal([0, 5, 9], json["prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()));
        var generated = json["output_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToList();
        Assert.InRange(generated.Count, 1, 6);
        Assert.True(generated.Count == 6 || generated[^1] == 1, "fewer tokens than asked only when the last is EOS");
        Assert.NotNull(json["text"]);
    }

    [Fact]
    public void An_empty_prompt_starts_from_bos()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var (code, output, error) = Run("generate", "--model", model, "--prompt", "", "--max-new-tokens", "3", "-o", "json");
        Assert.True(code == 0, error);
        Assert.Equal([0], JsonNode.Parse(output)!["prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()));
    }

    [Fact]
    public void A_config_missing_a_field_is_one_sentence_and_exit_code_2()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var configPath = Path.Combine(model, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config.Remove("intermediate_size");
        File.WriteAllText(configPath, config.ToJsonString());
        var (code, _, error) = Run("generate", "--model", model, "--prompt-ids", "0");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("intermediate_size", error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
    }

    [Fact]
    public void A_config_that_does_not_match_the_weights_names_the_tensor()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var configPath = Path.Combine(model, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["intermediate_size"] = 40;
        File.WriteAllText(configPath, config.ToJsonString());
        var (code, _, error) = Run("generate", "--model", model, "--prompt-ids", "0");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("mlp.gate_proj.weight", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_safetensors_file_is_an_error_not_a_crash()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var weights = Path.Combine(model, ModelCheckpoint.SingleFileName);
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length * 2 / 3)]);
        var (code, _, error) = Run("generate", "--model", model, "--prompt-ids", "0");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("model.safetensors", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Perplexity_reports_json_per_language_and_rejects_an_unknown_language()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var corpus = WriteCorpus(scratch);
        var (code, output, error) = Run("perplexity", "--model", model, "--corpus", corpus, "--format", "json");
        Assert.True(code == 0, error);
        var english = JsonNode.Parse(output)!["languages"]!["eng"]!;
        Assert.Equal(1, english["documents"]!.GetValue<long>());
        Assert.Equal(Math.Exp(english["mean_nll"]!.GetValue<double>()), english["perplexity"]!.GetValue<double>(), 6);

        (code, _, error) = Run("perplexity", "--model", model, "--corpus", corpus, "--languages", "xyz");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("unknown language 'xyz'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_corpus_with_invalid_utf8_names_the_file_and_line()
    {
        using var scratch = new ScratchFolder();
        var model = WriteModel(scratch);
        var corpus = WriteCorpus(scratch);
        var file = Path.Combine(corpus, "eng.jsonl");
        File.AppendAllText(file, "{\"id\": \"d3\", \"text\": \"caf");
        using (var stream = new FileStream(file, FileMode.Append)) stream.Write([0xC3, 0x28, (byte)'"', (byte)'}', (byte)'\n']);
        var (code, _, error) = Run("perplexity", "--model", model, "--corpus", corpus, "--split", "all");
        Assert.Equal(BabelCli.InputErrorExitCode, code);
        Assert.Contains("eng.jsonl", error, StringComparison.Ordinal);
        Assert.Contains("line 3", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tokenizer_trained_on_the_udhr_corpus_round_trips_every_document_of_every_default_language()
    {
        using var scratch = new ScratchFolder();
        var corpus = UdhrCorpus.Write(scratch.Combine("udhr"), SharedUdhrPackage.Package, LanguageCatalog.Default);
        var (code, _, error) = Run("tokenizer", "train", "--corpus", corpus.Directory, "--vocab-size", "2048", "--out", scratch.Combine("tok"));
        Assert.True(code == 0, error);
        using var tokenizer = HuggingFaceTokenizer.Load(scratch.Combine("tok"));
        Assert.Equal(2048, tokenizer.VocabSize);
        foreach (var language in LanguageCatalog.Default)
        {
            foreach (var document in corpus.ReadDocuments(language.Code))
            {
                var ids = tokenizer.Encode(document.Text);
                Assert.Equal(document.Text, tokenizer.Decode(ids));
                // Merges must compress: fewer tokens than UTF-8 bytes in every language.
                Assert.True(ids.Length < Encoding.UTF8.GetByteCount(document.Text), $"{language.Code}/{document.Id} did not compress");
            }
        }
    }

    [Fact]
    public void Pretraining_on_real_text_brings_held_out_perplexity_far_below_the_untrained_model_in_every_language()
    {
        using var scratch = new ScratchFolder();
        string[] languages = ["eng", "fra", "cmn", "hin"];
        var corpus = UdhrCorpus.Write(scratch.Combine("udhr"), SharedUdhrPackage.Package, [.. languages.Select(LanguageCatalog.Get)]);
        var model = scratch.Combine("model");
        var (code, _, error) = Run("pretrain", "--corpus", corpus.Directory, "--out", model, "--steps", "120", "--batch-size", "8",
            "--sequence-length", "64", "--threads", "1");
        Assert.True(code == 0, error);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "training.json")))!;
        Assert.Equal(120, manifest["steps"]!.GetValue<int>());
        Assert.False(Directory.Exists(Path.Combine(model, "checkpoint")), "the resumable checkpoint is removed once the model is complete");
        var history = Training.TrainingHistoryTests.ReadHistory(model);
        Assert.Equal(Enumerable.Range(1, 120), history.Select(h => h.Step));
        Assert.All(history, h => Assert.True(h.TokensPerSecond > 0 && h.LearningRate > 0, $"step {h.Step}"));
        Training.TrainingHistoryTests.AssertPng(model);

        using var trained = Babel.Modeling.Transformer.CausalLanguageModel.Load(model);
        using var untrained = new Babel.Modeling.Transformer.CausalLanguageModel(trained.Config);
        untrained.InitializeWeights(1);
        untrained.eval();
        using var tokenizer = HuggingFaceTokenizer.Load(model);
        foreach (var language in languages)
        {
            var texts = corpus.ReadDocuments(language, CorpusSplit.Heldout).Select(d => d.Text).ToList();
            var after = Babel.Modeling.Training.Perplexity.Evaluate(trained, tokenizer, language, texts);
            var before = Babel.Modeling.Training.Perplexity.Evaluate(untrained, tokenizer, language, texts);
            Assert.True(after.Perplexity < before.Perplexity / 2, $"{language}: held-out perplexity {after.Perplexity:F1} vs untrained {before.Perplexity:F1}");
            Assert.Equal(after.MeanNll, manifest["heldout"]![language]!["meanNll"]!.GetValue<double>(), 4);
        }
    }
}
