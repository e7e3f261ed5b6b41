using System.Security.Cryptography;
using Babel.Modeling.Checkpoints;
using Babel.Storage;
using Babel.UnitTests.Jobs;
using Xunit;
using static Babel.UnitTests.CliRun;

namespace Babel.UnitTests.Checkpoints;

/// <summary>
/// A hub cache laid out as huggingface_hub writes it: <c>models--org--name/blobs/</c> holding the files by hash,
/// <c>snapshots/COMMIT/</c> holding relative symbolic links to them, and <c>refs/REVISION</c> holding a commit hash.
/// </summary>
internal sealed class FakeHub(string home)
{
    public string Home { get; } = home;
    public string Hub => Path.Combine(Home, "hub");

    public string Repository(string id) => Path.Combine(Hub, "models--" + id.Replace("/", "--", StringComparison.Ordinal));

    /// <summary>Adds <paramref name="folder"/>'s files as snapshot <paramref name="commit"/> of <paramref name="id"/>, named by <paramref name="refs"/>.</summary>
    public string AddSnapshot(string id, string commit, string folder, params string[] refs)
    {
        var repository = Repository(id);
        var blobs = Directory.CreateDirectory(Path.Combine(repository, "blobs")).FullName;
        var snapshot = Directory.CreateDirectory(Path.Combine(repository, "snapshots", commit)).FullName;
        foreach (var file in Directory.GetFiles(folder))
        {
            var hash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));
            var blob = Path.Combine(blobs, hash);
            if (!File.Exists(blob)) File.Copy(file, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", hash));
        }
        foreach (var name in refs)
        {
            var path = Path.Combine(repository, "refs", name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            // The hub writes the hash without a newline.
            File.WriteAllText(path, commit);
        }
        return snapshot;
    }

    public Func<string, string?> Environment => name => name == "HF_HOME" ? Home : null;
}

public class HuggingFaceCacheTests
{
    private const string CommitA = "0123456789abcdef0123456789abcdef01234567";
    private const string CommitB = "fedcba9876543210fedcba9876543210fedcba98";

    private static (FakeHub Hub, string Model) Build(ScratchFolder scratch)
    {
        var (model, _) = JobTestInputs.Write(scratch);
        var hub = new FakeHub(scratch.Combine("hf-home"));
        hub.AddSnapshot("org/tiny", CommitA, model, "main");
        // A second revision: the same files and one more.
        var other = Directory.CreateDirectory(scratch.Combine("other")).FullName;
        foreach (var file in Directory.GetFiles(model)) File.Copy(file, Path.Combine(other, Path.GetFileName(file)));
        File.WriteAllText(Path.Combine(other, "README.md"), "v1");
        hub.AddSnapshot("org/tiny", CommitB, other, "v1", "refs/pr/1");
        return (hub, model);
    }

    [Fact]
    public void An_id_resolves_to_the_snapshot_its_revision_names()
    {
        using var scratch = new ScratchFolder();
        var (hub, model) = Build(scratch);
        var snapshots = Path.Combine(hub.Repository("org/tiny"), "snapshots");
        Assert.Equal(Path.Combine(snapshots, CommitA), HuggingFaceCache.ResolveModel("org/tiny", hub.Environment));
        Assert.Equal(Path.Combine(snapshots, CommitA), HuggingFaceCache.ResolveModel("org/tiny@main", hub.Environment));
        Assert.Equal(Path.Combine(snapshots, CommitB), HuggingFaceCache.ResolveModel("org/tiny@v1", hub.Environment));
        Assert.Equal(Path.Combine(snapshots, CommitB), HuggingFaceCache.ResolveModel("org/tiny@refs/pr/1", hub.Environment));
        // A commit hash names its snapshot without any ref.
        Assert.Equal(Path.Combine(snapshots, CommitB), HuggingFaceCache.ResolveModel("org/tiny@" + CommitB, hub.Environment));

        // The snapshot's symbolic links load as the folder they came from.
        var resolved = HuggingFaceCache.ResolveModel("org/tiny", hub.Environment);
        Assert.NotNull(new FileInfo(Path.Combine(resolved, "config.json")).LinkTarget);
        using var fromHub = ModelCheckpoint.Load(resolved);
        using var original = ModelCheckpoint.Load(model);
        Assert.Equal(original.Config.ToJson().ToJsonString(), fromHub.Config.ToJson().ToJsonString());
        Assert.Equal(original.Tensors.Keys.Order(), fromHub.Tensors.Keys.Order());
        foreach (var (name, tensor) in original.Tensors) Assert.True(tensor.eq(fromHub.Tensors[name]).all().item<bool>(), name);
    }

    [Fact]
    public void A_local_folder_wins_over_the_cache_and_other_text_is_left_alone()
    {
        using var scratch = new ScratchFolder();
        var (hub, _) = Build(scratch);
        var local = Directory.CreateDirectory(Path.Combine(scratch.Path, "org", "tiny")).FullName;
        Assert.Equal(local, HuggingFaceCache.ResolveModel("org/tiny", hub.Environment, scratch.Path));
        // Not of the form org/name: the loader will name the missing folder.
        Assert.Equal("./runs/a/b", HuggingFaceCache.ResolveModel("./runs/a/b", hub.Environment, scratch.Path));
        Assert.Equal("/no/such/model", HuggingFaceCache.ResolveModel("/no/such/model", hub.Environment, scratch.Path));
    }

    [Fact]
    public void A_missing_model_or_revision_names_the_exact_path_looked_for()
    {
        using var scratch = new ScratchFolder();
        var (hub, _) = Build(scratch);
        UserInputException Error(string reference) => Assert.Throws<UserInputException>(() => HuggingFaceCache.ResolveModel(reference, hub.Environment, scratch.Path));

        var refsMain = Path.Combine(hub.Hub, "models--org--absent", "refs", "main");
        Assert.Equal(
            $"'org/absent' is neither a folder nor a model in the Hugging Face cache: {refsMain} does not exist; download the model there (e.g. 'huggingface-cli download org/absent') or pass a model folder.",
            Error("org/absent").Message);
        var refsV2 = Path.Combine(hub.Repository("org/tiny"), "refs", "v2");
        Assert.Equal(
            $"'org/tiny@v2' is neither a folder nor a model in the Hugging Face cache: {refsV2} does not exist; download the model there (e.g. 'huggingface-cli download org/tiny --revision v2') or pass a model folder.",
            Error("org/tiny@v2").Message);
        var missingCommit = new string('c', 40);
        var snapshot = Path.Combine(hub.Repository("org/tiny"), "snapshots", missingCommit);
        Assert.Equal(
            $"'org/tiny@{missingCommit}' is neither a folder nor a model in the Hugging Face cache: {snapshot} does not exist; download that revision there or pass a model folder.",
            Error("org/tiny@" + missingCommit).Message);

        // A ref pointing at a snapshot that is gone names the snapshot; a ref that holds no hash says so.
        File.WriteAllText(Path.Combine(hub.Repository("org/tiny"), "refs", "stale"), missingCommit);
        Assert.Contains(snapshot + " does not exist", Error("org/tiny@stale").Message, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(hub.Repository("org/tiny"), "refs", "broken"), "not a hash");
        Assert.Equal($"{Path.Combine(hub.Repository("org/tiny"), "refs", "broken")} should hold a 40-character commit hash but holds 'not a hash'; download the model again.",
            Error("org/tiny@broken").Message);
        // A revision cannot climb out of refs/.
        Assert.Equal("org/tiny@../../x", HuggingFaceCache.ResolveModel("org/tiny@../../x", hub.Environment, scratch.Path));
    }

    [Fact]
    public void The_cache_folder_is_chosen_as_huggingface_hub_chooses_it()
    {
        Func<string, string?> Env(params (string Name, string Value)[] values) => name => values.FirstOrDefault(v => v.Name == name).Value;
        var home = System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile);
        Assert.Equal(Path.Combine(home, ".cache", "huggingface", "hub"), HuggingFaceCache.HubDirectory(Env()));
        Assert.Equal(Path.Combine("/x", "huggingface", "hub"), HuggingFaceCache.HubDirectory(Env(("XDG_CACHE_HOME", "/x"))));
        Assert.Equal(Path.Combine("/h", "hub"), HuggingFaceCache.HubDirectory(Env(("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/h"))));
        Assert.Equal("/c", HuggingFaceCache.HubDirectory(Env(("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c"))));
    }
}

/// <summary>
/// <c>--model org/name</c> on the command line, with <c>HF_HOME</c> set for the process (these tests run one after the
/// other, and no other test reads it).
/// </summary>
public class HuggingFaceCacheCliTests
{
    [Fact]
    public void Generate_runs_a_model_from_the_cache_and_a_missing_one_is_exit_2_naming_the_path()
    {
        using var scratch = new ScratchFolder();
        var (model, _) = JobTestInputs.Write(scratch);
        var hub = new FakeHub(scratch.Combine("hf-home"));
        hub.AddSnapshot("org/tiny", "0123456789abcdef0123456789abcdef01234567", model, "main");
        string[] Args(string reference) => ["generate", "--model", reference, "--prompt-ids", "0,5,9", "--max-new-tokens", "4", "--format", "json"];
        var previous = Environment.GetEnvironmentVariable("HF_HOME");
        Environment.SetEnvironmentVariable("HF_HOME", hub.Home);
        try
        {
            var fromFolder = Run(Args(model));
            Assert.True(fromFolder.Code == 0, fromFolder.Error);
            var fromHub = Run(Args("org/tiny"));
            Assert.True(fromHub.Code == 0, fromHub.Error);
            Assert.Equal(fromFolder.Output, fromHub.Output);

            var (code, output, error) = Run(Args("org/absent"));
            Assert.Equal(2, code);
            Assert.Equal("", output);
            var path = Path.Combine(hub.Hub, "models--org--absent", "refs", "main");
            Assert.Equal(
                $"error: 'org/absent' is neither a folder nor a model in the Hugging Face cache: {path} does not exist; download the model there (e.g. 'huggingface-cli download org/absent') or pass a model folder.",
                error.TrimEnd('\n'));
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_HOME", previous);
        }
    }
}
