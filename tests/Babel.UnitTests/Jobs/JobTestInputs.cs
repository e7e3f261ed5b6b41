using Babel.Grains.Engine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Tokenization;
using Babel.Storage.Artifacts;
using Babel.Storage.Corpora;
using Babel.UnitTests.Transformer;

namespace Babel.UnitTests.Jobs;

/// <summary>A small corpus in two languages and a random tiny model with a tokenizer trained on it, for job-kind tests.</summary>
internal static class JobTestInputs
{
    public sealed class LocalFolders(Dictionary<string, string> folders) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) => Task.FromResult(folders[key]);
    }

    /// <summary>What a worker resolves: folders downloaded from the store into its cache folder.</summary>
    public sealed class StoreFolders(IArtifactStore store, string cacheRoot) : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) => store.DownloadFolderAsync(key, cacheRoot, cancellationToken);
    }

    /// <param name="scratch">Where the corpus and model folders go.</param>
    /// <param name="contextLength">The model's max_position_embeddings (a served model refuses prompts that do not fit).</param>
    public static (string Model, string Corpus) Write(ScratchFolder scratch, int contextLength = 128)
    {
        var corpus = scratch.Combine("corpus");
        var texts = new Dictionary<string, IReadOnlyList<CorpusDocument>>
        {
            ["eng"] = [.. Enumerable.Range(0, 7).Select(i => new CorpusDocument($"d{i}", string.Join(' ', Enumerable.Repeat($"the cat number {i} sat on the mat", 1 + i))))],
            ["fra"] = [.. Enumerable.Range(0, 5).Select(i => new CorpusDocument($"d{i}", $"le chat numéro {i} est sur le tapis"))],
        };
        CorpusWriter.Write(corpus, new CorpusManifest("t", "t", "MIT",
            [new("eng", "English", "Latin", "Indo-European", "t", "MIT"), new("fra", "French", "Latin", "Indo-European", "t", "MIT")],
            new CorpusSplitManifest([], "none held out")), texts);
        var model = scratch.Combine("model");
        var tokenizer = ByteLevelBpeTrainer.Train(texts.Values.SelectMany(d => d).Select(d => d.Text), 300, minFrequency: 1);
        tokenizer.Save(model);
        var config = TinyModels.Config() with { VocabSize = tokenizer.VocabSize, BosTokenId = 0, EosTokenId = 1, PadTokenId = 2, MaxPositionEmbeddings = contextLength };
        using var network = TinyModels.Create(config);
        ModelCheckpoint.Save(model, config, network.StateDict());
        return (model, corpus);
    }
}
