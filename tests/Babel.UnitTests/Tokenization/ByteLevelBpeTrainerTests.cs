using Babel.Modeling.Tokenization;
using Babel.Storage;
using Xunit;

namespace Babel.UnitTests.Tokenization;

public sealed class ByteLevelBpeTrainerTests
{
    [Fact]
    public void Merges_MatchNaiveTrainerThatRecountsEveryPair()
    {
        // minFrequency 1 on a small corpus forces many ties between pairs seen once or twice.
        var corpus = MultilingualSamples.Corpus(repeats: 2).Concat(MultilingualSamples.Unseen.Take(9)).ToArray();
        const int VocabSize = 259 + 400;

        var model = ByteLevelBpeTrainer.Train(corpus, VocabSize, minFrequency: 1);
        var expected = NaiveBpe.Train(corpus, VocabSize - 3, minFrequency: 1);

        Assert.Equal(expected, model.Merges);
    }

    [Fact]
    public void MinFrequency_StopsWhenNoPairIsFrequentEnough()
    {
        var corpus = MultilingualSamples.Corpus(repeats: 1).ToArray();

        var model = ByteLevelBpeTrainer.Train(corpus, 100_000, minFrequency: 3);
        var expected = NaiveBpe.Train(corpus, 100_000, minFrequency: 3);

        Assert.Equal(expected, model.Merges);
        Assert.True(model.VocabSize < 100_000);
    }

    [Fact]
    public void PreTokenizer_SplitsLikeTheGpt2Regex()
    {
        foreach (var text in MultilingualSamples.Sentences.Concat(MultilingualSamples.Unseen).Where(t => !HasSupplementaryLetter(t)))
            Assert.Equal(NaiveBpe.PreTokenize(text), ByteLevelPreTokenizer.Split(text));
        Assert.Equal(["don", "'t", " stop", "!'", "s", "  ", " x", "\n", "\n", "y", " \t "], ByteLevelPreTokenizer.Split("don't stop!'s   x\n\ny \t "));
    }

    [Fact]
    public void PreTokenizer_TreatsLettersOutsideTheBasicPlaneAsLetters()
    {
        // Oniguruma (Hugging Face) sees U+20000 as \p{L}; .NET Regex would see two surrogates instead.
        Assert.Equal(["a𠀀b", " 𝒜𝓁"], ByteLevelPreTokenizer.Split("a𠀀b 𝒜𝓁"));
    }

    [Fact]
    public void VocabSize_IsExactlyTarget_WithSpecialsThenBytes()
    {
        var model = ByteLevelBpeTrainer.Train(MultilingualSamples.Corpus(), 600, minFrequency: 1);

        Assert.Equal(600, model.VocabSize);
        Assert.Equal(["<s>", "</s>", "<pad>"], Enumerable.Range(0, 3).Select(model.TokenOf));
        Assert.Equal("!", model.TokenOf(3 + '!'));
        Assert.Equal("Ġ", model.TokenOf(3 + ' '));
        Assert.Equal(600, Enumerable.Range(0, 600).Select(model.TokenOf).Distinct().Count());
    }

    [Fact]
    public void TrainingTwice_WritesByteIdenticalFiles()
    {
        using var first = new TemporaryFolder();
        using var second = new TemporaryFolder();

        ByteLevelBpeTrainer.Train(MultilingualSamples.Corpus(), 700, minFrequency: 1).Save(first.Path);
        // Reversed corpus order: same counts, so the same file.
        ByteLevelBpeTrainer.Train(MultilingualSamples.Corpus().Reverse(), 700, minFrequency: 1).Save(second.Path);

        foreach (var file in (string[])["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
            Assert.Equal(File.ReadAllBytes(Path.Combine(first.Path, file)), File.ReadAllBytes(Path.Combine(second.Path, file)));
    }

    [Fact]
    public void VocabSize_BelowBytesPlusSpecials_IsRejected()
    {
        var error = Assert.Throws<UserInputException>(() => ByteLevelBpeTrainer.Train(["abc"], 258));
        Assert.Contains("259", error.Message);
    }

    [Fact]
    public void Progress_IsReportedUpToTheFinalSize()
    {
        var reports = new List<BpeTrainingProgress>();
        ByteLevelBpeTrainer.Train(MultilingualSamples.Corpus(), 500, minFrequency: 1, new SynchronousProgress(reports.Add));

        Assert.NotEmpty(reports);
        Assert.Equal(new BpeTrainingProgress(500, 500, reports[^1].Merges), reports[^1]);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.Merges <= p.Second.Merges));
    }

    private static bool HasSupplementaryLetter(string text) =>
        text.EnumerateRunes().Any(r => r.Value > 0xFFFF && System.Text.Rune.IsLetter(r));

    private sealed class SynchronousProgress(Action<BpeTrainingProgress> report) : IProgress<BpeTrainingProgress>
    {
        public void Report(BpeTrainingProgress value) => report(value);
    }
}

internal sealed class TemporaryFolder : IDisposable
{
    public TemporaryFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "babel-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
