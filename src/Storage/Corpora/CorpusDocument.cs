namespace Babel.Storage.Corpora;

/// <summary>One document of a corpus: an id shared by all translations of the same text, and the text itself.</summary>
public sealed record CorpusDocument(string Id, string Text);

/// <summary>Which part of a corpus to read: the documents to train or profile on, the held-out ones, or both.</summary>
public enum CorpusSplit
{
    Train,
    Heldout,
    All,
}
