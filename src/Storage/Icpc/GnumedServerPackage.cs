using System.ComponentModel;
using System.Diagnostics;
using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using Babel.Storage.Corpora;

namespace Babel.Storage.Icpc;

/// <summary>
/// Debian's <c>gnumed-server</c> 22.19-1 package, which ships the German ICPC-2 thesaurus and the ICPC-2 code
/// titles as SQL scripts. Obtained with <c>apt-get download</c> into the cache (or fetched from the Debian
/// archive's pool when apt cannot), checked against the SHA-256 the Debian archive publishes, and unpacked
/// in process: the <c>ar</c> container is read here, its <c>data.tar.xz</c> is decompressed by the <c>xz</c>
/// tool (.NET has no xz decoder) and read with <see cref="TarReader"/>. Nothing is installed.
/// </summary>
public sealed class GnumedServerPackage
{
    /// <summary>The package version Babel pins, so the dataset is reproducible.</summary>
    public const string Version = "22.19-1";

    /// <summary>The file name apt gives the package.</summary>
    public const string FileName = "gnumed-server_22.19-1_all.deb";

    /// <summary>SHA-256 of the .deb as listed in Debian bookworm's Packages index.</summary>
    public const string Sha256 = "91f8060fc617b5f3ba19d35469839c8fa42babaa59a0ac608d3437c9dcbbe114";

    /// <summary>Where the Debian archive keeps the file when apt is not available.</summary>
    public const string PoolUrl = "http://deb.debian.org/debian/pool/main/g/gnumed-server/gnumed-server_22.19-1_all.deb";

    /// <summary>The German ICPC-2 thesaurus (synonym → code).</summary>
    public const string ThesaurusPath = "var/lib/gnumed/server/sql/v14-v15/dynamic/v15-ref-icpc2_de-thesaurus.sql";

    /// <summary>The ICPC-2 codes with titles, components and notes (English).</summary>
    public const string CodesPath = "var/lib/gnumed/server/sql/v15-ref-icpc2-data.sql";

    /// <summary>The package's copyright file.</summary>
    public const string CopyrightPath = "usr/share/doc/gnumed-server/copyright";

    private static readonly string[] _wanted = [ThesaurusPath, CodesPath, CopyrightPath];
    private static readonly TimeSpan _toolTimeout = TimeSpan.FromMinutes(5);
    private readonly Dictionary<string, string> _files;

    private GnumedServerPackage(string debPath, Dictionary<string, string> files)
    {
        DebPath = debPath;
        _files = files;
    }

    /// <summary>The .deb the files were read from.</summary>
    public string DebPath { get; }

    /// <summary>Text of <see cref="ThesaurusPath"/>.</summary>
    public string ThesaurusSql => _files[ThesaurusPath];

    /// <summary>Text of <see cref="CodesPath"/>.</summary>
    public string CodesSql => _files[CodesPath];

    /// <summary>Text of the Debian copyright file.</summary>
    public string Copyright => _files[CopyrightPath];

    /// <summary>
    /// Opens <paramref name="debPath"/> when given; otherwise the cached .deb in <paramref name="cacheDirectory"/>
    /// (default <see cref="UdhrPackage.DefaultCacheDirectory"/>), downloading it first when missing or damaged.
    /// </summary>
    public static GnumedServerPackage Obtain(string? debPath = null, string? cacheDirectory = null)
    {
        if (debPath is not null)
        {
            var full = Path.GetFullPath(debPath);
            if (!File.Exists(full))
            {
                throw new UserInputException($"package file '{full}' does not exist; pass the file made by 'apt-get download gnumed-server' ({Version}).");
            }
            if (!HasChecksum(full))
            {
                throw new UserInputException($"package file '{full}' is not {FileName} (its SHA-256 differs); pass the file made by 'apt-get download gnumed-server={Version}'.");
            }
            return Load(full);
        }
        var cache = Path.GetFullPath(cacheDirectory ?? UdhrPackage.DefaultCacheDirectory());
        var cached = Path.Combine(cache, FileName);
        if (!File.Exists(cached) || !HasChecksum(cached))
        {
            Download(cache, cached);
        }
        return Load(cached);
    }

    private static GnumedServerPackage Load(string deb)
    {
        byte[] dataTarXz;
        try
        {
            dataTarXz = ArMember(deb, "data.tar.xz");
        }
        catch (Exception exception) when (exception is InvalidDataException or EndOfStreamException)
        {
            throw new UserInputException($"'{deb}' is not a readable Debian package ({exception.Message}); delete it and obtain {FileName} again.", exception);
        }
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        var strictUtf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        var tar = Unxz(dataTarXz);
        using (var reader = new TarReader(new MemoryStream(tar)))
        {
            while (reader.GetNextEntry() is { } entry)
            {
                var name = entry.Name.StartsWith("./", StringComparison.Ordinal) ? entry.Name[2..] : entry.Name;
                if (entry.DataStream is null || !_wanted.Contains(name, StringComparer.Ordinal)) continue;
                using var content = new MemoryStream();
                entry.DataStream.CopyTo(content);
                files[name] = strictUtf8.GetString(content.ToArray());
            }
        }
        var missing = _wanted.Where(w => !files.ContainsKey(w)).ToList();
        if (missing.Count > 0)
        {
            throw new UserInputException($"'{deb}' lacks {string.Join(", ", missing)}; pass gnumed-server {Version}.");
        }
        return new GnumedServerPackage(deb, files);
    }

    /// <summary>Reads one member of an <c>ar</c> archive (the .deb container): 8-byte magic, then 60-byte headers.</summary>
    internal static byte[] ArMember(string path, string member)
    {
        using var stream = File.OpenRead(path);
        var magic = new byte[8];
        stream.ReadExactly(magic);
        if (Encoding.ASCII.GetString(magic) != "!<arch>\n") throw new InvalidDataException("no ar magic");
        var header = new byte[60];
        while (stream.Position < stream.Length)
        {
            stream.ReadExactly(header);
            var name = Encoding.ASCII.GetString(header, 0, 16).Trim().TrimEnd('/');
            var size = long.Parse(Encoding.ASCII.GetString(header, 48, 10).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            if (name == member)
            {
                var data = new byte[size];
                stream.ReadExactly(data);
                return data;
            }
            // Members are aligned to even offsets.
            stream.Seek(size + (size & 1), SeekOrigin.Current);
        }
        throw new InvalidDataException($"no {member} member");
    }

    private static byte[] Unxz(byte[] compressed)
    {
        var start = new ProcessStartInfo("xz")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--decompress");
        start.ArgumentList.Add("--stdout");
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new UserInputException("could not start xz; install the xz-utils package.");
        }
        catch (Win32Exception exception)
        {
            throw new UserInputException($"the xz tool was not found ({exception.Message}); install the xz-utils package.", exception);
        }
        using (process)
        {
            var output = new MemoryStream();
            var copy = process.StandardOutput.BaseStream.CopyToAsync(output);
            var error = process.StandardError.ReadToEndAsync();
            process.StandardInput.BaseStream.Write(compressed);
            process.StandardInput.Close();
            if (!process.WaitForExit(_toolTimeout))
            {
                process.Kill(entireProcessTree: true);
                throw new UserInputException($"xz did not finish within {_toolTimeout.TotalMinutes:0} minutes; check the machine's load and retry.");
            }
            copy.GetAwaiter().GetResult();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new UserInputException($"xz could not decompress the package's data.tar.xz ({error.Result.Trim()}); delete the cached .deb and retry.");
            }
            return output.ToArray();
        }
    }

    private static bool HasChecksum(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream)) == Sha256;
    }

    /// <summary>Tries apt (the ordinary client, which knows the configured mirror), then the Debian pool over HTTP.</summary>
    private static void Download(string cache, string target)
    {
        Directory.CreateDirectory(cache);
        var scratch = Path.Combine(cache, $".deb-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(scratch);
        try
        {
            var downloaded = Path.Combine(scratch, FileName);
            var aptSaid = TryAptDownload(scratch);
            if (!File.Exists(downloaded) || !HasChecksum(downloaded))
            {
                var httpSaid = TryHttpDownload(downloaded);
                if (httpSaid is not null)
                {
                    throw new UserInputException($"could not obtain {FileName} (apt-get said: {aptSaid ?? "wrong file"}; HTTP said: {httpSaid}); download it yourself and pass --package PATH.deb.");
                }
            }
            if (!HasChecksum(downloaded))
            {
                throw new UserInputException($"the downloaded {FileName} does not have the published SHA-256 {Sha256}; pass a verified copy with --package PATH.deb.");
            }
            File.Move(downloaded, target, overwrite: true);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <returns>Null on success, else what went wrong in a clause.</returns>
    private static string? TryAptDownload(string destination)
    {
        var start = new ProcessStartInfo("apt-get")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = destination,
        };
        start.ArgumentList.Add("download");
        start.ArgumentList.Add($"gnumed-server={Version}");
        try
        {
            using var process = Process.Start(start);
            if (process is null) return "did not start";
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(_toolTimeout))
            {
                process.Kill(entireProcessTree: true);
                return "timed out";
            }
            process.WaitForExit();
            return process.ExitCode == 0 ? null : $"exit code {process.ExitCode}: {error.Result.Split('\n')[0].Trim()}";
        }
        catch (Win32Exception exception)
        {
            return $"not available ({exception.Message})";
        }
    }

    /// <returns>Null on success, else what went wrong in a clause.</returns>
    private static string? TryHttpDownload(string target)
    {
        try
        {
            using var client = new HttpClient { Timeout = _toolTimeout };
            using var response = client.GetAsync(PoolUrl, HttpCompletionOption.ResponseHeadersRead).GetAwaiter().GetResult();
            if (!response.IsSuccessStatusCode) return $"{PoolUrl} answered {(int)response.StatusCode}";
            using var file = File.Create(target);
            response.Content.ReadAsStream().CopyTo(file);
            return null;
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException or IOException)
        {
            return $"{PoolUrl}: {exception.Message}";
        }
    }
}
