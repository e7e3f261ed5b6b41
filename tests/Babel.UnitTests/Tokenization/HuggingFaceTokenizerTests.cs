using System.Text.Json.Nodes;
using Babel.Modeling.Tokenization;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Tokenization;

/// <summary>A tokenizer trained by <see cref="ByteLevelBpeTrainer"/>, saved, and loaded through Hugging Face's library.</summary>
public sealed class TrainedTokenizerFixture : IDisposable
{
    public const int VocabSize = 1500;
    private readonly TemporaryFolder _folder = new();

    public TrainedTokenizerFixture()
    {
        // Unseen texts are mixed in (repeated) so that merges also cross emoji and supplementary letters.
        var corpus = MultilingualSamples.Corpus(repeats: 5).Concat(Enumerable.Repeat(MultilingualSamples.Unseen, 3).SelectMany(t => t));
        Model = ByteLevelBpeTrainer.Train(corpus, VocabSize, minFrequency: 2);
        Model.Save(_folder.Path);
        Tokenizer = HuggingFaceTokenizer.Load(_folder.Path);
    }

    public string Folder => _folder.Path;
    public ByteLevelBpeModel Model { get; }
    public HuggingFaceTokenizer Tokenizer { get; }

    public void Dispose()
    {
        Tokenizer.Dispose();
        _folder.Dispose();
    }
}

public sealed class HuggingFaceTokenizerTests(TrainedTokenizerFixture trained) : IClassFixture<TrainedTokenizerFixture>
{
    private static IEnumerable<string> AllTexts => MultilingualSamples.Sentences.Concat(MultilingualSamples.Unseen);

    [Fact]
    public void DecodeOfEncode_ReturnsTheText_InManyScripts()
    {
        foreach (var text in AllTexts)
            Assert.Equal(text, trained.Tokenizer.Decode(trained.Tokenizer.Encode(text)));
    }

    [Fact]
    public void HuggingFaceIds_EqualLowestRankMergeEncoding()
    {
        var ids = Enumerable.Range(0, trained.Model.VocabSize).ToDictionary(trained.Model.TokenOf);
        foreach (var text in AllTexts)
        {
            var expected = NaiveBpe.Encode(text, trained.Model.Merges, ByteLevelPreTokenizer.Split).Select(t => ids[t]);
            Assert.Equal(expected, trained.Tokenizer.Encode(text));
        }
    }

    [Fact]
    public void FrequentWords_BecomeSingleTokens()
    {
        foreach (var word in (string[])[" and", " dignity", " свободными", " في", " और", "人人"])
            Assert.Single(trained.Tokenizer.Encode(word));
        // Devanagari signs are marks, not \p{L}: GPT-2's pattern cuts " मनुष्यों" into 6 pre-tokens, each one learned token.
        Assert.Equal([" मन", "ु", "ष", "्", "य", "ों"], ByteLevelPreTokenizer.Split(" मनुष्यों"));
        Assert.Equal(6, trained.Tokenizer.Encode(" मनुष्यों").Length);
        Assert.True(trained.Tokenizer.Encode(MultilingualSamples.Sentences[4]).Length < System.Text.Encoding.UTF8.GetByteCount(MultilingualSamples.Sentences[4]) / 4);
    }

    [Fact]
    public void SpecialTokens_HaveTheDocumentedIds_AndAreNeverAddedOrDecoded()
    {
        var tokenizer = trained.Tokenizer;
        Assert.Equal((0, 1, 2, TrainedTokenizerFixture.VocabSize), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId, tokenizer.VocabSize));

        var ids = tokenizer.Encode("free and equal");
        Assert.DoesNotContain(ids, id => id < 3);
        Assert.Equal("free and equal", tokenizer.Decode([tokenizer.BosId, .. ids, tokenizer.EosId, tokenizer.PadId]));
        Assert.Empty(tokenizer.Encode(""));
        Assert.Equal("", tokenizer.Decode([]));
    }

    [Fact]
    public void Encode_FromSeveralThreads_GivesTheSameIds()
    {
        var texts = AllTexts.ToArray();
        var expected = texts.Select(trained.Tokenizer.Encode).ToArray();
        var results = new int[64][];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => results[i] = trained.Tokenizer.Encode(texts[i % texts.Length]));
        for (var i = 0; i < results.Length; i++) Assert.Equal(expected[i % texts.Length], results[i]);
    }

    [Fact]
    public void PostProcessorThatAddsBos_IsIgnored()
    {
        using var folder = CopyOfTrainedFolder();
        var path = Path.Combine(folder.Path, "tokenizer.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        json["post_processor"] = JsonNode.Parse("""
            { "type": "TemplateProcessing",
              "single": [ { "SpecialToken": { "id": "<s>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } } ],
              "pair": [ { "Sequence": { "id": "A", "type_id": 0 } }, { "Sequence": { "id": "B", "type_id": 1 } } ],
              "special_tokens": { "<s>": { "id": "<s>", "ids": [0], "tokens": ["<s>"] } } }
            """);
        File.WriteAllText(path, json.ToJsonString());

        using var tokenizer = HuggingFaceTokenizer.Load(folder.Path);

        Assert.Equal(trained.Tokenizer.Encode("free and equal"), tokenizer.Encode("free and equal"));
    }

    [Fact]
    public void SpecialIds_ComeFromConfigJson_AndPadFallsBackToEos()
    {
        using var folder = CopyOfTrainedFolder();
        File.Delete(Path.Combine(folder.Path, "tokenizer_config.json"));
        File.Delete(Path.Combine(folder.Path, "special_tokens_map.json"));
        File.WriteAllText(Path.Combine(folder.Path, "config.json"), """{ "bos_token_id": 1, "eos_token_id": [0, 1], "pad_token_id": null }""");

        using var tokenizer = HuggingFaceTokenizer.Load(folder.Path);

        Assert.Equal((1, 0, 0), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId));
    }

    [Fact]
    public void MissingTokenizerJson_IsAUserError_NamingTheFile()
    {
        using var folder = new TemporaryFolder();
        var error = Assert.Throws<UserInputException>(() => HuggingFaceTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.98)]
    public void TruncatedTokenizerJson_IsAUserError(double keptFraction)
    {
        using var folder = CopyOfTrainedFolder();
        var path = Path.Combine(folder.Path, "tokenizer.json");
        var text = File.ReadAllText(path);
        File.WriteAllText(path, text[..(int)(text.Length * keptFraction)]);

        var error = Assert.Throws<UserInputException>(() => HuggingFaceTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Theory]
    [InlineData("[1, 2, 3]")]
    [InlineData("""{ "model": { "type": "BPE" } }""")]
    [InlineData("""{ "model": { "type": "BPE", "vocab": { "a": 0 }, "merges": [["a", "zz"]] }, "added_tokens": [] }""")]
    [InlineData("""{ "model": { "type": "NoSuchModel", "vocab": { "a": 0 } } }""")]
    public void WellFormedJsonThatIsNoTokenizer_IsAUserError(string content)
    {
        using var folder = new TemporaryFolder();
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer.json"), content);

        var error = Assert.Throws<UserInputException>(() => HuggingFaceTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer.json", error.Message);
    }

    private TemporaryFolder CopyOfTrainedFolder()
    {
        var folder = new TemporaryFolder();
        foreach (var file in Directory.GetFiles(trained.Folder))
            File.Copy(file, Path.Combine(folder.Path, Path.GetFileName(file)));
        return folder;
    }
}
