using System.Text.Json;
using Babel.Storage;
using Babel.Storage.Icpc;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Text2Tree;

/// <summary>The gnumed-server 22.19-1 package, obtained once per test run through the shared cache (as <c>babel data icpc</c> does).</summary>
internal static class SharedGnumedPackage
{
    private static readonly Lazy<GnumedServerPackage> _package = new(() => GnumedServerPackage.Obtain(), LazyThreadSafetyMode.ExecutionAndPublication);

    public static GnumedServerPackage Package => _package.Value;
}

public class IcpcDataTests
{
    [Fact]
    public void The_thesaurus_has_58941_terms_labelled_with_1366_codes_715_of_them_with_fewer_than_5_terms()
    {
        var terms = IcpcThesaurus.ParseTerms(SharedGnumedPackage.Package.ThesaurusSql);
        Assert.Equal(58_941, terms.Count);
        var perCode = terms.GroupBy(t => t.Code).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(1_366, perCode.Count);
        Assert.Equal(715, perCode.Count(p => p.Value < 5));
        Assert.All(terms, t => Assert.False(string.IsNullOrWhiteSpace(t.Text)));
        // The first entry of the file: a doubled quote in SQL is one quote in the text.
        Assert.Equal(new IcpcTerm("'Augenringe'", "S08"), terms[0]);
    }

    [Fact]
    public void Code_titles_cover_every_thesaurus_code_and_the_component_ranges_match_the_data()
    {
        var package = SharedGnumedPackage.Package;
        var codes = IcpcThesaurus.ParseCodes(package.CodesSql);
        var used = IcpcThesaurus.ParseTerms(package.ThesaurusSql).Select(t => t.Code).ToHashSet();
        var titled = codes.Select(c => c.Code).ToHashSet();
        Assert.Subset(titled, used);
        Assert.Equal("FEVER", codes.First(c => c.Code == "A03").Title);
        // Where the data states a component, the code-number ranges give the same one.
        var stated = codes.Where(c => c.Component is not null).ToList();
        Assert.True(stated.Count > 1000, $"only {stated.Count} codes state a component");
        Assert.All(stated, c => Assert.Equal(c.Component, IcpcThesaurus.Component(c.Code)));
        Assert.Equal(17, IcpcThesaurus.ParseChapters(package.CodesSql).Select(c => c.Code).Distinct().Count());
        Assert.Contains("NON-COMMERCIAL USE ONLY", package.CodesSql);
        Assert.Contains("GPL-2+", package.Copyright);
    }

    [Fact]
    public void Component_of_a_code_follows_the_ICPC2_number_ranges()
    {
        Assert.Equal(1, IcpcThesaurus.Component("A01"));
        Assert.Equal(1, IcpcThesaurus.Component("A29"));
        Assert.Equal(2, IcpcThesaurus.Component("K30"));
        Assert.Equal(2, IcpcThesaurus.Component("K49"));
        Assert.Equal(3, IcpcThesaurus.Component("L50"));
        Assert.Equal(4, IcpcThesaurus.Component("L61"));
        Assert.Equal(5, IcpcThesaurus.Component("R62"));
        Assert.Equal(6, IcpcThesaurus.Component("R63"));
        Assert.Equal(6, IcpcThesaurus.Component("R69"));
        Assert.Equal(7, IcpcThesaurus.Component("T90"));
        Assert.Throws<UserInputException>(() => IcpcThesaurus.Component("T9"));
    }

    [Fact]
    public void Data_icpc_writes_the_dataset_with_paths_and_a_split_that_keeps_every_code_in_train()
    {
        using var scratch = new ScratchFolder();
        var output = scratch.Combine("icpc");
        var (code, stdout, error) = Run("data", "icpc", "--out", output, "--package", SharedGnumedPackage.Package.DebPath);
        Assert.True(code == 0, error);
        Assert.Contains("58,941 records with 1,366 labels", stdout);
        Assert.Contains("NON-COMMERCIAL", stdout);

        var dataset = CodedTextDataset.Read(output);
        Assert.Equal(58_941, dataset.Records.Count);
        Assert.Equal(1_366, dataset.Labels.Labels.Count);
        var fever = dataset.Labels.Labels.Single(l => l.Code == "A03");
        Assert.Equal(["A", "A:1", "A03"], fever.Path);
        Assert.Equal("GENERAL/UNSPECIFIED", dataset.Labels.Nodes["A"]);

        var split = dataset.Split;
        Assert.Equal(58_941, split.Train.Count + split.Validation.Count + split.Test.Count);
        Assert.Equal(58_941, split.Train.Concat(split.Validation).Concat(split.Test).Distinct().Count());
        var labelOf = dataset.Records.ToDictionary(r => r.Id, r => r.Labels[0]);
        Assert.Equal(1_366, split.Train.Select(id => labelOf[id]).Distinct().Count());
        // Deterministic: the split is a function of the ids alone.
        Assert.Equal(JsonSerializer.Serialize(split), JsonSerializer.Serialize(CodedTextDataset.SplitRecords(dataset.Records)));
    }

    [Fact]
    public void A_chapter_subset_keeps_the_ids_of_the_full_dataset()
    {
        var (all, _) = IcpcDataset.Build(SharedGnumedPackage.Package);
        var (subset, labels) = IcpcDataset.Build(SharedGnumedPackage.Package, ["K", "R"]);
        Assert.Equal(7_125, subset.Count);
        Assert.Equal(164, labels.Labels.Count);
        Assert.All(labels.Labels, l => Assert.Contains(l.Code[0], "KR"));
        var full = all.ToDictionary(r => r.Id);
        Assert.All(subset, r => Assert.Equal(full[r.Id].Text, r.Text));
        Assert.Equal(["K", "R"], labels.Nodes.Keys.Where(k => k.Length == 1));
        Assert.Throws<UserInputException>(() => IcpcDataset.Build(SharedGnumedPackage.Package, ["Q"]));
    }

    [Fact]
    public void Min_examples_keeps_the_terms_of_codes_with_enough_of_them_and_the_whole_tree()
    {
        using var scratch = new ScratchFolder();
        var output = scratch.Combine("icpc-10");
        var (code, stdout, error) = Run("data", "icpc", "--out", output, "--package", SharedGnumedPackage.Package.DebPath, "--min-examples", "10");
        Assert.True(code == 0, error);
        Assert.Contains("57,748 records with 1,366 labels", stdout);
        Assert.Contains("kept the terms of 589 codes with at least 10 terms; dropped 1,193 terms of 777 codes", stdout);

        var dataset = CodedTextDataset.Read(output);
        var filter = dataset.Manifest.MinExamplesFilter!;
        Assert.Equal(10, filter.MinExamples);
        Assert.Equal(589, filter.KeptCodes);
        Assert.Equal(1_193, filter.DroppedRecords);
        Assert.Equal(777, filter.DroppedCodes.Length);
        Assert.Equal(58_941, dataset.Records.Count + filter.DroppedRecords);
        // Every kept code has at least 10 terms, no dropped code has a term left, and the tree keeps all 1,366 codes.
        var perCode = dataset.Records.GroupBy(r => r.Labels[0]).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(589, perCode.Count);
        Assert.All(perCode.Values, n => Assert.True(n >= 10));
        Assert.DoesNotContain(filter.DroppedCodes, perCode.ContainsKey);
        Assert.Equal(1_366, dataset.Labels.Labels.Count);
        Assert.Contains("at least 10 terms", dataset.Manifest.Source);
        // The split of a kept code is the one it has in the full dataset (the rule is per code).
        var full = CodedTextDataset.SplitRecords(IcpcDataset.Build(SharedGnumedPackage.Package).Records);
        var kept = dataset.Records.Select(r => r.Id).ToHashSet();
        Assert.Equal(full.Test.Where(kept.Contains), dataset.Split.Test);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-3")]
    public void Min_examples_below_1_exits_2_with_one_sentence(string value)
    {
        using var scratch = new ScratchFolder();
        var (code, _, error) = Run("data", "icpc", "--out", scratch.Combine("out"), "--package", SharedGnumedPackage.Package.DebPath, "--min-examples", value);
        Assert.Equal(2, code);
        Assert.Contains("--min-examples must be a positive number", error);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Fact]
    public void Min_examples_drops_a_record_if_any_of_its_codes_is_rare()
    {
        CodedText[] records = [new("1", "a", ["X"]), new("2", "b", ["X"]), new("3", "c", ["X", "Y"]), new("4", "d", ["Z"])];
        var (kept, filter) = MinExamplesFilter.Apply(records, 2);
        Assert.Equal(["1", "2"], kept.Select(r => r.Id));
        Assert.Equal(["Y", "Z"], filter.DroppedCodes);
        Assert.Equal(2, filter.DroppedRecords);
        Assert.Equal(1, filter.KeptCodes);
        Assert.Equal(4, MinExamplesFilter.Apply(records, 1).Kept.Count);
        Assert.Throws<UserInputException>(() => MinExamplesFilter.Apply(records, 0));
    }

    [Fact]
    public void A_deb_with_the_wrong_checksum_is_refused_with_a_clear_sentence()
    {
        using var scratch = new ScratchFolder();
        var fake = scratch.Combine("fake.deb");
        File.WriteAllText(fake, "!<arch>\n");
        var (code, _, error) = Run("data", "icpc", "--out", scratch.Combine("out"), "--package", fake);
        Assert.Equal(2, code);
        Assert.Contains("SHA-256 differs", error);
        Assert.False(Directory.Exists(scratch.Combine("out")));
    }

    [Fact]
    public void The_ar_reader_finds_the_data_member_of_the_deb()
    {
        var bytes = GnumedServerPackage.ArMember(SharedGnumedPackage.Package.DebPath, "data.tar.xz");
        // xz magic: FD 37 7A 58 5A 00.
        Assert.Equal(new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00 }, bytes[..6]);
    }
}
