using System.Text.Json;
using System.Text.Json.Serialization;
using Babel.Modeling.Checkpoints;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>
/// MoEfication's split of every layer's FFN neurons into equal-size experts: <see cref="ExpertOfNeuron"/>[layer][neuron]
/// is the expert id of that neuron. Stored as <c>experts.json</c> beside the model.
/// </summary>
public sealed record ExpertPartition
{
    public const string FileName = "experts.json";

    public required int Experts { get; init; }
    public required int IntermediateSize { get; init; }
    /// <summary>How the partition was made: <c>balanced-kmeans</c>, <c>random</c>, <c>contiguous</c> …</summary>
    public required string Method { get; init; }
    public long Seed { get; init; }
    /// <summary>Per layer, per neuron: its expert id in [0, <see cref="Experts"/>).</summary>
    public required int[][] ExpertOfNeuron { get; init; }

    [JsonIgnore] public int Layers => ExpertOfNeuron.Length;
    [JsonIgnore] public int NeuronsPerExpert => IntermediateSize / Experts;

    /// <summary>Neurons 0..n/E-1 form expert 0, and so on: the identity split, for tests and as a baseline.</summary>
    public static ExpertPartition Contiguous(int layers, int intermediateSize, int experts)
    {
        RequireDivisible(intermediateSize, experts, "the model");
        var size = intermediateSize / experts;
        return new ExpertPartition
        {
            Experts = experts, IntermediateSize = intermediateSize, Method = "contiguous",
            ExpertOfNeuron = [.. Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, intermediateSize).Select(n => n / size).ToArray())],
        };
    }

    /// <summary>Whether every layer's experts are contiguous blocks of neurons (as <see cref="Contiguous"/> makes and <see cref="ExpertLayout.GroupByExpert"/> leaves a model).</summary>
    [JsonIgnore]
    public bool IsContiguous => ExpertOfNeuron.All(layer => layer.Select((expert, neuron) => expert == neuron / NeuronsPerExpert).All(b => b));

    public static void RequireDivisible(int intermediateSize, int experts, string source)
    {
        if (experts < 1 || intermediateSize % experts != 0)
        {
            throw new UserInputException($"{experts} experts do not divide {source}'s intermediate_size {intermediateSize}; choose a divisor of {intermediateSize}.");
        }
    }

    /// <summary>
    /// For each layer, the neuron indices ordered by expert (then by index): gathering the intermediate activations with it
    /// gives a view [tokens, experts, neurons per expert].
    /// </summary>
    public long[][] NeuronOrder() =>
    [
        .. ExpertOfNeuron.Select(layer => Enumerable.Range(0, layer.Length).OrderBy(n => layer[n]).ThenBy(n => n).Select(n => (long)n).ToArray()),
    ];

    /// <summary>For each layer, the inverse permutation of <see cref="NeuronOrder"/>: scatters the expert-ordered view back to neuron order.</summary>
    public long[][] InverseNeuronOrder() =>
    [
        .. NeuronOrder().Select(order =>
        {
            var inverse = new long[order.Length];
            for (var position = 0; position < order.Length; position++) inverse[order[position]] = position;
            return inverse;
        }),
    ];

    /// <summary>Checks sizes and that every expert has exactly intermediate_size / experts neurons in every layer.</summary>
    public ExpertPartition Validate(string source)
    {
        RequireDivisible(IntermediateSize, Experts, source);
        for (var layer = 0; layer < Layers; layer++)
        {
            var assignment = ExpertOfNeuron[layer];
            if (assignment.Length != IntermediateSize)
            {
                throw new UserInputException($"{source}: layer {layer} assigns {assignment.Length} neurons but intermediate_size is {IntermediateSize}.");
            }
            var sizes = new int[Experts];
            foreach (var expert in assignment)
            {
                if (expert < 0 || expert >= Experts) throw new UserInputException($"{source}: layer {layer} names expert {expert}, outside 0..{Experts - 1}.");
                sizes[expert]++;
            }
            var uneven = Array.FindIndex(sizes, s => s != NeuronsPerExpert);
            if (uneven >= 0) throw new UserInputException($"{source}: layer {layer} gives expert {uneven} {sizes[uneven]} neurons instead of {NeuronsPerExpert}.");
        }
        return this;
    }

    /// <summary>Checks that this partition fits <paramref name="config"/> (a partition made for another model is refused).</summary>
    public ExpertPartition CheckFits(ModelConfig config, string source)
    {
        if (Layers != config.NumHiddenLayers || IntermediateSize != config.IntermediateSize)
        {
            throw new UserInputException($"{source} was made for {Layers} layers of {IntermediateSize} neurons but the model has {config.NumHiddenLayers} layers of {config.IntermediateSize}; run 'babel moefy' for this model.");
        }
        return this;
    }

    private static readonly JsonSerializerOptions _json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static ExpertPartition Load(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, FileName);
        if (!File.Exists(path)) throw new UserInputException($"{path} is missing; run 'babel moefy --model {modelDirectory} --experts E' first.");
        ExpertPartition? partition;
        try
        {
            partition = JsonSerializer.Deserialize<ExpertPartition>(File.ReadAllText(path), _json);
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not a valid expert partition ({e.Message}).", e);
        }
        return (partition ?? throw new UserInputException($"{path} is empty.")).Validate(path);
    }

    public void Save(string modelDirectory) =>
        AtomicFile.WriteAllText(Path.Combine(modelDirectory, FileName), JsonSerializer.Serialize(this, _json));
}
