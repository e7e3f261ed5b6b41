using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;

namespace Babel.Modeling.Checkpoints;

/// <summary>
/// The models a device worker has loaded, by artifact key, so consecutive shards of a job reuse one replica.
/// Keeps the most recently used few; used from the worker's single thread only.
/// </summary>
public sealed class ModelReplicas(int capacity = 2) : IDisposable
{
    private readonly LinkedList<(string Key, CausalLanguageModel Model, HuggingFaceTokenizer? Tokenizer)> _loaded = new();

    public IReadOnlyList<string> Keys => [.. _loaded.Select(e => e.Key)];

    /// <summary>
    /// The model of <paramref name="key"/> in <paramref name="dtype"/>, and its tokenizer when the folder has one (llama2.c
    /// imports have none). A replica that a job changes once after loading (e.g. grouped by an expert partition) passes
    /// <paramref name="prepared"/>: its name and the change, applied once to a fresh load and cached apart from the plain one.
    /// </summary>
    public (CausalLanguageModel Model, HuggingFaceTokenizer? Tokenizer) Get(string key, string localFolder, ModelDtype dtype = ModelDtype.Float32,
        (string Name, Action<CausalLanguageModel> Apply)? prepared = null)
    {
        // The same weights in another element type, or prepared otherwise, are another replica.
        key = dtype == ModelDtype.Float32 ? key : $"{key} ({ModelDtypes.Name(dtype)})";
        if (prepared is { } named) key = $"{key} [{named.Name}]";
        var node = _loaded.First;
        while (node is not null && node.Value.Key != key) node = node.Next;
        if (node is not null)
        {
            _loaded.Remove(node);
            _loaded.AddFirst(node);
            return (node.Value.Model, node.Value.Tokenizer);
        }
        var model = CausalLanguageModel.Load(localFolder, dtype);
        try
        {
            prepared?.Apply(model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        var tokenizer = File.Exists(Path.Combine(localFolder, "tokenizer.json")) ? HuggingFaceTokenizer.Load(localFolder) : null;
        _loaded.AddFirst((key, model, tokenizer));
        while (_loaded.Count > capacity)
        {
            var last = _loaded.Last!.Value;
            _loaded.RemoveLast();
            last.Model.Dispose();
            last.Tokenizer?.Dispose();
        }
        return (model, tokenizer);
    }

    public void Dispose()
    {
        foreach (var (_, model, tokenizer) in _loaded)
        {
            model.Dispose();
            tokenizer?.Dispose();
        }
        _loaded.Clear();
    }
}
