using System.Text.RegularExpressions;
using Babel.Storage;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// Model folders named as on the Hugging Face Hub, <c>org/name[@revision]</c>, found offline in the hub's local cache
/// (what <c>huggingface-cli download</c> and transformers write): <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else
/// <c>$XDG_CACHE_HOME/huggingface/hub</c>, else <c>~/.cache/huggingface/hub</c>. There, <c>models--org--name/refs/REVISION</c>
/// holds a commit hash (revision <c>main</c> by default) and <c>models--org--name/snapshots/HASH/</c> is the model folder
/// (its files symbolic links into <c>blobs/</c>); a 40-hex revision names the snapshot directly. Nothing is downloaded.
/// </summary>
public static partial class HuggingFaceCache
{
    /// <summary>The revision a reference without <c>@revision</c> means.</summary>
    public const string DefaultRevision = "main";

    /// <summary>
    /// The model folder <paramref name="reference"/> names: itself when it is an existing folder (a local path always
    /// wins), else, when it has the form <c>org/name[@revision]</c>, that snapshot of the hub cache; any other text is
    /// returned unchanged (the loader then reports the missing folder).
    /// </summary>
    /// <param name="reference">A folder path or a hub model id with an optional revision (branch, tag or commit hash).</param>
    /// <param name="environment">Reads an environment variable; the process environment by default (tests pass their own).</param>
    /// <param name="baseDirectory">What a relative folder path is relative to; the current directory by default.</param>
    /// <exception cref="UserInputException">A hub id that is not in the cache: one sentence naming the exact path looked for.</exception>
    public static string ResolveModel(string reference, Func<string, string?>? environment = null, string? baseDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var local = baseDirectory is null ? reference : Path.Combine(baseDirectory, reference);
        if (Directory.Exists(local)) return local;
        var match = HubId().Match(reference);
        if (!match.Success) return reference;
        var id = match.Groups["id"].Value;
        var revision = match.Groups["revision"].Success ? match.Groups["revision"].Value : DefaultRevision;
        var repository = Path.Combine(HubDirectory(environment ?? Environment.GetEnvironmentVariable), "models--" + id.Replace("/", "--", StringComparison.Ordinal));
        string commit;
        if (CommitHash().IsMatch(revision))
        {
            commit = revision;
        }
        else
        {
            var refFile = Path.Combine(repository, "refs", revision);
            if (!File.Exists(refFile))
            {
                throw new UserInputException(
                    $"'{reference}' is neither a folder nor a model in the Hugging Face cache: {refFile} does not exist; download the model there (e.g. 'huggingface-cli download {id}{(revision == DefaultRevision ? "" : " --revision " + revision)}') or pass a model folder.");
            }
            commit = File.ReadAllText(refFile).Trim();
            if (!CommitHash().IsMatch(commit))
                throw new UserInputException($"{refFile} should hold a 40-character commit hash but holds '{Shorten(commit)}'; download the model again.");
        }
        var snapshot = Path.Combine(repository, "snapshots", commit);
        if (!Directory.Exists(snapshot))
        {
            throw new UserInputException(
                $"'{reference}' is neither a folder nor a model in the Hugging Face cache: {snapshot} does not exist; download that revision there or pass a model folder.");
        }
        return snapshot;
    }

    /// <summary>The hub cache folder: <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else the XDG or home default, as huggingface_hub chooses it.</summary>
    public static string HubDirectory(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (NonEmpty(environment("HF_HUB_CACHE")) is { } hubCache) return hubCache;
        var home = NonEmpty(environment("HF_HOME"))
            ?? Path.Combine(NonEmpty(environment("XDG_CACHE_HOME")) ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "huggingface");
        return Path.Combine(home, "hub");
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";

    // The hub's repository names: org and name of letters, digits, '-', '_', '.' (not starting with '.' or '-');
    // a revision is a branch, tag or hash without '..', e.g. 'main', 'v1.0', 'refs/pr/1'.
    [GeneratedRegex(@"^(?<id>[A-Za-z0-9_][A-Za-z0-9_.\-]*/[A-Za-z0-9_][A-Za-z0-9_.\-]*)(@(?<revision>(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.\-/]*))?$")]
    private static partial Regex HubId();

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitHash();
}
