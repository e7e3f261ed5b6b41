using System.Globalization;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Text2Tree;
using Babel.Modeling.Transformer;
using Babel.Storage.Icpc;

namespace Babel.UnitTests.Text2Tree;

/// <summary>Small hand-built trees, datasets and encoders for Text2Tree tests.</summary>
internal static class Text2TreeTestData
{
    /// <summary>
    /// root → A → {A:1 → {A01, A02, A03}, A:7 → {A90}}, B → B:1 → {B01}: node ids in insertion order
    /// 0 root, 1 A, 2 A/A:1, 3 A01, 4 A02, 5 A03, 6 A/A:7, 7 A90, 8 B, 9 B/B:1, 10 B01.
    /// </summary>
    public static LabelTree HandTree() => LabelTree.FromPaths(
    [
        ("A01", "pain", ["A", "A:1", "A01"]),
        ("A02", "chills", ["A", "A:1", "A02"]),
        ("A03", "fever", ["A", "A:1", "A03"]),
        ("A90", "anomaly", ["A", "A:7", "A90"]),
        ("B01", "blood", ["B", "B:1", "B01"]),
    ]);

    /// <summary>Writes a learnable ICD-10 dataset (each code has its own words) of <paramref name="perCode"/> texts per code.</summary>
    public static string WriteIcd10Dataset(string directory, int perCode = 12)
    {
        var codes = new (string Code, string Words)[]
        {
            ("I10", "blood pressure high"), ("I20.9", "chest pain angina"), ("J45.9", "asthma wheeze"), ("J18.9", "pneumonia cough fever"),
            ("E11.9", "diabetes sugar"), ("K35.8", "appendix belly"),
        };
        var random = new Random(11);
        var records = new List<CodedText>();
        foreach (var (code, words) in codes)
        {
            var vocabulary = words.Split(' ');
            for (var i = 0; i < perCode; i++)
            {
                var text = string.Join(' ', Enumerable.Range(0, 3).Select(_ => vocabulary[random.Next(vocabulary.Length)])) + $" patient {random.Next(100)}";
                records.Add(new CodedText(string.Create(CultureInfo.InvariantCulture, $"{code}-{i:D3}"), text, [code]));
            }
        }
        var labels = new LabelSet(LabelSchemes.Icd10, [.. codes.Select(c => new LabelEntry(c.Code, c.Words, LabelSchemes.PathOf(LabelSchemes.Icd10, c.Code)))], []);
        CodedTextDataset.Write(directory, "toy-icd10", "test", "test data", records, labels);
        return directory;
    }

    /// <summary>A tiny random encoder (hidden 16, one layer, 40 token ids).</summary>
    public static CausalLanguageModel Encoder(long seed = 3)
    {
        TorchRuntime.Initialize();
        var config = new ModelConfig
        {
            HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 2, HeadDim = 8,
            VocabSize = 40, MaxPositionEmbeddings = 32, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
            BosTokenId = 1, EosTokenId = 2, PadTokenId = 0,
        };
        var model = new CausalLanguageModel(config);
        model.InitializeWeights(seed);
        return model;
    }
}
