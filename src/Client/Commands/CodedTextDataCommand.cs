using System.CommandLine;
using System.Globalization;
using Babel.Storage;
using Babel.Storage.Icpc;

namespace Babel.Client.Commands;

/// <summary><c>babel data icpc</c> and <c>babel data codes</c>: labelled-text datasets for Text2Tree.</summary>
internal static class CodedTextDataCommand
{
    public static Command CreateIcpc()
    {
        var output = new Option<string>("--out") { Description = "Folder to write data.jsonl, labels.json, split.json and dataset.json to; replaced atomically.", Required = true };
        var package = new Option<string?>("--package") { Description = $"Use this .deb (from 'apt-get download gnumed-server={GnumedServerPackage.Version}') instead of downloading it." };
        var chapters = new Option<string?>("--chapters") { Description = "Only these chapters (comma-separated letters, e.g. K,R): a smaller task for a small machine." };
        var minExamples = new Option<int?>("--min-examples") { Description = "Only the terms of codes with at least N terms (the label tree keeps every code); dataset.json lists the dropped codes." };
        var command = new Command("icpc", "Write the German ICPC-2 thesaurus (Debian gnumed-server; NON-COMMERCIAL data licence) as a hierarchical classification dataset.")
        {
            output, package, chapters, minExamples,
        };
        command.SetAction(parse =>
        {
            var writer = parse.InvocationConfiguration.Output;
            var selected = parse.GetValue(chapters)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var minimum = parse.GetValue(minExamples);
            // A bad value is reported before the package is downloaded.
            if (minimum <= 0) throw new UserInputException($"--min-examples must be a positive number of terms per code (got {minimum}); 1 keeps every code.");
            var dataset = IcpcDataset.Write(parse.GetValue(output)!, GnumedServerPackage.Obtain(parse.GetValue(package)), selected, minimum);
            WriteSummary(writer, dataset);
            if (dataset.Manifest.MinExamplesFilter is { } filter)
            {
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"kept the terms of {filter.KeptCodes:N0} codes with at least {filter.MinExamples} terms; dropped {filter.DroppedRecords:N0} terms of {filter.DroppedCodes.Length:N0} codes (listed in {CodedTextDataset.ManifestFile})"));
            }
            writer.WriteLine($"licence: {dataset.Manifest.Licence}");
            return 0;
        });
        return command;
    }

    public static Command CreateCodes()
    {
        var input = new Option<string>("--input") { Description = "JSONL, one {\"id\"?, \"text\", \"labels\": [codes or a/b/code paths]} per line.", Required = true };
        var tree = new Option<string>("--tree") { Description = "Label tree file: one 'CODE<TAB>description' line per label (for --scheme paths: 'a/b/CODE<TAB>description').", Required = true };
        var scheme = new Option<string>("--scheme") { Description = $"How codes become tree paths: {string.Join(", ", LabelSchemes.Names)}.", DefaultValueFactory = _ => LabelSchemes.Icd10 };
        var output = new Option<string>("--out") { Description = "Folder to write the dataset to; replaced atomically.", Required = true };
        var name = new Option<string>("--name") { Description = "Dataset name recorded in dataset.json.", DefaultValueFactory = _ => "coded-texts" };
        var licence = new Option<string>("--licence") { Description = "The data's licence, recorded in dataset.json.", DefaultValueFactory = _ => "unspecified" };
        var command = new Command("codes", "Write users' own coded texts (e.g. ICD-10) with a label tree as a Text2Tree dataset.")
        {
            input, tree, scheme, output, name, licence,
        };
        command.SetAction(parse =>
        {
            var schemeName = parse.GetValue(scheme)!;
            var labels = LabelSchemes.ReadTreeFile(parse.GetValue(tree)!, schemeName);
            var inputPath = parse.GetValue(input)!;
            var records = CodedTextDataset.ReadJsonl(inputPath).Select(r => LabelSchemes.Normalise(schemeName, r)).ToList();
            var dataset = CodedTextDataset.Write(parse.GetValue(output)!, parse.GetValue(name)!, Path.GetFullPath(inputPath), parse.GetValue(licence)!, records, labels);
            WriteSummary(parse.InvocationConfiguration.Output, dataset);
            return 0;
        });
        return command;
    }

    private static void WriteSummary(TextWriter writer, CodedTextDataset dataset)
    {
        var m = dataset.Manifest;
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {m.Records:N0} records with {m.Labels:N0} labels to {dataset.Directory} (train {m.Train:N0}, validation {m.Validation:N0}, test {m.Test:N0})"));
    }
}
