using System.Text;
using Babel.Storage;
using Babel.Storage.Corpora;
using Xunit;

namespace Babel.UnitTests.Corpora;

public class CorpusTests
{
    private static readonly CorpusManifest _manifest = new(
        "tiny", "test", "CC0",
        [new CorpusLanguage("eng", "English", "Latin", "Indo-European / Germanic", "test", "CC0"),
         new CorpusLanguage("cmn", "Mandarin Chinese", "Han (Simplified variant)", "Sino-Tibetan / Sinitic", "test", "CC0")],
        new CorpusSplitManifest(["d2"], "d2 is held out"));

    private static readonly Dictionary<string, IReadOnlyList<CorpusDocument>> _documents = new()
    {
        ["eng"] = [new("d1", "One \"quoted\"\nline two."), new("d2", "Two."), new("d3", "Three.")],
        ["cmn"] = [new("d1", "人人生而自由"), new("d2", "二"), new("d3", "三 😀")],
    };

    private static Corpus WriteTiny(ScratchFolder scratch)
    {
        CorpusWriter.Write(scratch.Combine("tiny"), _manifest, _documents);
        return Corpus.Open(scratch.Combine("tiny"));
    }

    [Fact]
    public void Write_then_open_round_trips_manifest_and_documents()
    {
        using var scratch = new ScratchFolder();
        var corpus = WriteTiny(scratch);

        Assert.Equal(_manifest.Name, corpus.Manifest.Name);
        Assert.Equal(_manifest.Languages, corpus.Manifest.Languages);
        Assert.Equal(_manifest.Split.Heldout, corpus.Manifest.Split.Heldout);
        Assert.Equal(_documents["eng"], corpus.ReadDocuments("eng"));
        Assert.Equal(_documents["cmn"], corpus.ReadDocuments("cmn", CorpusSplit.All));
        Assert.Equal(3, File.ReadAllLines(scratch.Combine("tiny/cmn.jsonl")).Length);
        Assert.Contains("人人生而自由", File.ReadAllText(scratch.Combine("tiny/cmn.jsonl")));
        Assert.Contains("\"heldout\"", File.ReadAllText(scratch.Combine("tiny/corpus.json")));
    }

    [Fact]
    public void Splits_are_disjoint_and_cover_every_document()
    {
        using var scratch = new ScratchFolder();
        var corpus = WriteTiny(scratch);

        Assert.Equal(["d1", "d3"], corpus.ReadDocuments("eng", CorpusSplit.Train).Select(d => d.Id));
        Assert.Equal(["d2"], corpus.ReadDocuments("cmn", CorpusSplit.Heldout).Select(d => d.Id));
    }

    [Fact]
    public void Writing_over_an_existing_corpus_replaces_it_whole()
    {
        using var scratch = new ScratchFolder();
        WriteTiny(scratch);
        var englishOnly = _manifest with { Languages = [_manifest.Languages[0]] };
        CorpusWriter.Write(scratch.Combine("tiny"), englishOnly, new Dictionary<string, IReadOnlyList<CorpusDocument>> { ["eng"] = _documents["eng"] });

        Assert.False(File.Exists(scratch.Combine("tiny/cmn.jsonl")));
        Assert.Single(Corpus.Open(scratch.Combine("tiny")).Manifest.Languages);
        Assert.Single(Directory.GetDirectories(scratch.Path));
    }

    [Fact]
    public void A_folder_that_is_not_a_corpus_is_never_replaced()
    {
        using var scratch = new ScratchFolder();
        File.WriteAllText(scratch.Combine("notes.txt"), "keep me");

        var error = Assert.Throws<UserInputException>(() => CorpusWriter.Write(scratch.Path, _manifest, _documents));
        Assert.Contains("is not a corpus folder", error.Message);
        Assert.Equal("keep me", File.ReadAllText(scratch.Combine("notes.txt")));
    }

    [Fact]
    public void A_failed_write_leaves_nothing_behind()
    {
        using var scratch = new ScratchFolder();
        var missingChinese = new Dictionary<string, IReadOnlyList<CorpusDocument>> { ["eng"] = _documents["eng"] };

        Assert.Throws<ArgumentException>(() => CorpusWriter.Write(scratch.Combine("tiny"), _manifest, missingChinese));
        Assert.Empty(Directory.GetFileSystemEntries(scratch.Path));
    }

    [Fact]
    public void Invalid_utf8_is_reported_with_file_and_line()
    {
        using var scratch = new ScratchFolder();
        var corpus = WriteTiny(scratch);
        var path = scratch.Combine("tiny/eng.jsonl");
        var lines = File.ReadAllLines(path);
        var bad = Encoding.UTF8.GetBytes("{\"id\": \"d9\", \"text\": \"caf").Concat(new byte[] { 0xC3, 0x28 }).Concat(Encoding.UTF8.GetBytes("\"}\n"));
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(lines[0] + "\n" + lines[1] + "\n"), .. bad]);

        var error = Assert.Throws<UserInputException>(() => corpus.ReadDocuments("eng").ToList());
        Assert.Contains(path, error.Message);
        Assert.Contains("line 3 is not valid UTF-8", error.Message);
    }

    [Theory]
    [InlineData("{\"id\": \"d1\", \"text\": ", "line 2 is not valid JSON")]
    [InlineData("{\"id\": \"d1\"}", "line 2 lacks a string \"text\"")]
    [InlineData("{\"text\": \"x\"}", "line 2 lacks a string \"id\"")]
    [InlineData("[1, 2]", "line 2 lacks a string \"id\"")]
    [InlineData("{\"id\": \"d0\", \"text\": \"again\"}", "line 2 repeats document id 'd0'")]
    public void Bad_lines_are_reported_with_file_and_line(string line, string expected)
    {
        using var scratch = new ScratchFolder();
        var corpus = WriteTiny(scratch);
        var path = scratch.Combine("tiny/eng.jsonl");
        File.WriteAllText(path, "{\"id\": \"d0\", \"text\": \"fine\"}\n" + line + "\n");

        var error = Assert.Throws<UserInputException>(() => corpus.ReadDocuments("eng").ToList());
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Unknown_language_lists_the_corpus_languages()
    {
        using var scratch = new ScratchFolder();
        var corpus = WriteTiny(scratch);

        var error = Assert.Throws<UserInputException>(() => corpus.ReadDocuments("xyz"));
        Assert.Equal("unknown language 'xyz'; this corpus has: eng, cmn.", error.Message);
        Assert.Contains("not an ISO 639-3", Assert.Throws<UserInputException>(() => corpus.ReadDocuments("en")).Message);
    }

    [Fact]
    public void Missing_folder_or_manifest_is_a_user_error()
    {
        using var scratch = new ScratchFolder();

        Assert.Contains("does not exist", Assert.Throws<UserInputException>(() => Corpus.Open(scratch.Combine("nope"))).Message);
        Assert.Contains("has no corpus.json", Assert.Throws<UserInputException>(() => Corpus.Open(scratch.Path)).Message);
    }

    [Fact]
    public void A_manifest_missing_a_field_is_a_user_error()
    {
        using var scratch = new ScratchFolder();
        File.WriteAllText(scratch.Combine("corpus.json"), "{\"name\": \"x\", \"source\": \"s\", \"licence\": \"l\", \"languages\": []}");

        var error = Assert.Throws<UserInputException>(() => Corpus.Open(scratch.Path));
        Assert.Contains("corpus.json is not a valid corpus manifest", error.Message);
    }
}
