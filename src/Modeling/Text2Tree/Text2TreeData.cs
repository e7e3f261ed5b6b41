using System.Security.Cryptography;
using System.Text;
using Babel.Storage;
using Babel.Storage.Icpc;

namespace Babel.Modeling.Text2Tree;

/// <summary>One record with its labels as label indices of the tree.</summary>
public sealed record LabelledExample(string Id, string Text, int[] Labels);

/// <summary>
/// A <see cref="CodedTextDataset"/> mapped onto its <see cref="LabelTree"/>, split into train / validation / test, with
/// optional stratified subsets: a subset of N records keeps max(1, ⌊n_c · N / total⌋) records of every label c (by first
/// label, in SHA-256-of-id order), so every label stays and the imbalance is preserved; it may exceed N by up to the label count.
/// </summary>
public sealed class Text2TreeData
{
    private Text2TreeData(LabelTree tree, bool multilabel, List<LabelledExample> train, List<LabelledExample> validation, List<LabelledExample> test)
    {
        Tree = tree;
        Multilabel = multilabel;
        Train = train;
        Validation = validation;
        Test = test;
        var counts = new int[tree.LabelCount];
        foreach (var example in train)
        {
            foreach (var label in example.Labels) counts[label]++;
        }
        TrainCounts = counts;
    }

    public LabelTree Tree { get; }
    /// <summary>True when some record has more than one label: sigmoid heads and per-label losses.</summary>
    public bool Multilabel { get; }
    public IReadOnlyList<LabelledExample> Train { get; }
    public IReadOnlyList<LabelledExample> Validation { get; }
    public IReadOnlyList<LabelledExample> Test { get; }
    /// <summary>Training records per label (of the subset used), for re-weighting and the frequency buckets.</summary>
    public IReadOnlyList<int> TrainCounts { get; }

    public static Text2TreeData Load(string directory, int maxTrain = 0, int maxEval = 0)
    {
        var dataset = CodedTextDataset.Read(directory);
        return From(dataset.Records, dataset.Labels, dataset.Split, maxTrain, maxEval);
    }

    public static Text2TreeData From(IReadOnlyList<CodedText> records, LabelSet labels, DatasetSplit split, int maxTrain = 0, int maxEval = 0)
    {
        var tree = LabelTree.FromLabelSet(labels);
        var byId = new Dictionary<string, LabelledExample>(StringComparer.Ordinal);
        foreach (var record in records)
        {
            if (string.IsNullOrWhiteSpace(record.Text)) throw new UserInputException($"record '{record.Id}' has an empty text; remove it or give it a text.");
            byId[record.Id] = new LabelledExample(record.Id, record.Text, [.. record.Labels.Select(tree.LabelIndex).Distinct()]);
        }
        List<LabelledExample> Part(List<string> ids) => [.. ids.Select(id => byId[id])];
        var multilabel = byId.Values.Any(e => e.Labels.Length > 1);
        var train = Subset(Part(split.Train), maxTrain);
        if (train.Count == 0) throw new UserInputException("the dataset's training split is empty; write the dataset with more records.");
        return new Text2TreeData(tree, multilabel, train, Subset(Part(split.Validation), maxEval), Subset(Part(split.Test), maxEval));
    }

    /// <summary>The stratified subset described on the class (all records when <paramref name="max"/> is 0 or not smaller).</summary>
    public static List<LabelledExample> Subset(List<LabelledExample> examples, int max)
    {
        if (max <= 0 || max >= examples.Count) return examples;
        var total = (double)examples.Count;
        var chosen = new List<LabelledExample>();
        foreach (var group in examples.GroupBy(e => e.Labels[0]).OrderBy(g => g.Key))
        {
            var keep = Math.Max(1, (int)Math.Floor(group.Count() * max / total));
            chosen.AddRange(group.OrderBy(e => Hash(e.Id), StringComparer.Ordinal).Take(keep));
        }
        return [.. chosen.OrderBy(e => e.Id, StringComparer.Ordinal)];
    }

    private static string Hash(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)));
}
