using System.Buffers.Binary;
using System.Text;

namespace Babel.Modeling.Runtime;

/// <summary>
/// Reads and edits the symbol-versioning sections of a little-endian ELF64 shared library:
/// the versions it needs (<c>.gnu.version_r</c>), the versions it defines (<c>.gnu.version_d</c>)
/// and which dynamic symbols are bound to which version index (<c>.gnu.version</c>).
/// </summary>
internal sealed class ElfVersionNeeds
{
    private const uint SectionDynamicSymbols = 11;
    private const uint SectionVersionDefinitions = 0x6ffffffd;
    private const uint SectionVersionNeeds = 0x6ffffffe;
    private const uint SectionVersionSymbols = 0x6fffffff;
    private const int SymbolEntrySize = 24;
    /// <summary><c>VER_FLG_WEAK</c>: the dynamic loader only warns when a weak version is missing.</summary>
    public const ushort WeakFlag = 0x2;

    private readonly byte[] _image;

    private ElfVersionNeeds(byte[] image, List<VersionNeed> needs, List<string> definitions, List<(string Symbol, ushort VersionIndex)> symbols)
    {
        _image = image;
        Needs = needs;
        Definitions = definitions;
        Symbols = symbols;
    }

    /// <summary>One <c>Vernaux</c> entry: a version the library needs from <see cref="File"/>.</summary>
    public sealed record VersionNeed(string File, string Name, ushort Index, ushort Flags, int FlagsOffset);

    public IReadOnlyList<VersionNeed> Needs { get; }

    /// <summary>Version names this library defines (e.g. <c>GLIBCXX_3.4.30</c> for libstdc++).</summary>
    public IReadOnlyList<string> Definitions { get; }

    /// <summary>Dynamic symbols with the version index they are bound to (hidden bit cleared).</summary>
    public IReadOnlyList<(string Symbol, ushort VersionIndex)> Symbols { get; }

    public byte[] Image => _image;

    public static ElfVersionNeeds Read(string path) => Parse(File.ReadAllBytes(path), path);

    public static ElfVersionNeeds Parse(byte[] image, string name)
    {
        var span = image.AsSpan();
        if (span.Length < 64 || !span[..4].SequenceEqual("\u007fELF"u8) || span[4] != 2 || span[5] != 1)
        {
            throw new InvalidDataException($"{name} is not a little-endian ELF64 file.");
        }
        var sectionHeaderOffset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]));
        var sectionHeaderSize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        var sectionCount = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        var sections = new List<Section>(sectionCount);
        for (var i = 0; i < sectionCount; i++)
        {
            var header = span.Slice(sectionHeaderOffset + i * sectionHeaderSize, sectionHeaderSize);
            sections.Add(new Section(
                Type: BinaryPrimitives.ReadUInt32LittleEndian(header[4..]),
                Offset: checked((int)BinaryPrimitives.ReadUInt64LittleEndian(header[0x18..])),
                Size: checked((int)BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..])),
                Link: BinaryPrimitives.ReadUInt32LittleEndian(header[0x28..]),
                Info: BinaryPrimitives.ReadUInt32LittleEndian(header[0x2C..])));
        }

        string StringAt(Section table, uint offset)
        {
            var start = table.Offset + (int)offset;
            var length = image.AsSpan(start).IndexOf((byte)0);
            return Encoding.ASCII.GetString(image, start, length);
        }

        var needs = new List<VersionNeed>();
        foreach (var section in sections.Where(s => s.Type == SectionVersionNeeds))
        {
            var strings = sections[(int)section.Link];
            var entry = section.Offset;
            for (var n = 0; n < section.Info; n++)
            {
                var count = BinaryPrimitives.ReadUInt16LittleEndian(span[(entry + 2)..]);
                var file = StringAt(strings, BinaryPrimitives.ReadUInt32LittleEndian(span[(entry + 4)..]));
                var aux = entry + (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(entry + 8)..]);
                for (var a = 0; a < count; a++)
                {
                    needs.Add(new VersionNeed(
                        file,
                        StringAt(strings, BinaryPrimitives.ReadUInt32LittleEndian(span[(aux + 8)..])),
                        Index: BinaryPrimitives.ReadUInt16LittleEndian(span[(aux + 6)..]),
                        Flags: BinaryPrimitives.ReadUInt16LittleEndian(span[(aux + 4)..]),
                        FlagsOffset: aux + 4));
                    aux += (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(aux + 12)..]);
                }
                entry += (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(entry + 12)..]);
            }
        }

        var definitions = new List<string>();
        foreach (var section in sections.Where(s => s.Type == SectionVersionDefinitions))
        {
            var strings = sections[(int)section.Link];
            var entry = section.Offset;
            for (var d = 0; d < section.Info; d++)
            {
                var aux = entry + (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(entry + 12)..]);
                definitions.Add(StringAt(strings, BinaryPrimitives.ReadUInt32LittleEndian(span[aux..])));
                entry += (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(entry + 16)..]);
            }
        }

        var symbols = new List<(string, ushort)>();
        var dynamicSymbols = sections.FirstOrDefault(s => s.Type == SectionDynamicSymbols);
        var versionSymbols = sections.FirstOrDefault(s => s.Type == SectionVersionSymbols);
        if (dynamicSymbols is not null && versionSymbols is not null)
        {
            var strings = sections[(int)dynamicSymbols.Link];
            var count = dynamicSymbols.Size / SymbolEntrySize;
            for (var i = 0; i < count; i++)
            {
                var nameOffset = BinaryPrimitives.ReadUInt32LittleEndian(span[(dynamicSymbols.Offset + i * SymbolEntrySize)..]);
                var version = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(span[(versionSymbols.Offset + 2 * i)..]) & 0x7fff);
                symbols.Add((StringAt(strings, nameOffset), version));
            }
        }
        return new ElfVersionNeeds(image, needs, definitions, symbols);
    }

    /// <summary>Sets <see cref="WeakFlag"/> on <paramref name="need"/> in <see cref="Image"/>.</summary>
    public void MarkWeak(VersionNeed need)
    {
        var flags = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_image.AsSpan(need.FlagsOffset)) | WeakFlag);
        BinaryPrimitives.WriteUInt16LittleEndian(_image.AsSpan(need.FlagsOffset), flags);
    }

    private sealed record Section(uint Type, int Offset, int Size, uint Link, uint Info);
}
