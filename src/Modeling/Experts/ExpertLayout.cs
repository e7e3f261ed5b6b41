using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Babel.Modeling.Transformer;
using static TorchSharp.torch;

namespace Babel.Modeling.Experts;

/// <summary>
/// Reorders a model's FFN neurons so that every expert of a partition is one contiguous block, as MoEfication's own code
/// does when it turns an FFN into experts: gate_proj and up_proj rows and down_proj columns move together, so the model
/// computes the same function (only the order of down_proj's sum over neurons changes, i.e. float rounding). On the
/// grouped model an expert's activations are a slice of the intermediate vector, so <see cref="ActivationCounter"/>
/// reduces per expert with a reshape instead of a gather or a matmul.
/// </summary>
public static class ExpertLayout
{
    /// <summary>A name for a replica grouped by <paramref name="partition"/>: the SHA-256 of its assignment, so another partition is another replica.</summary>
    public static string ReplicaName(ExpertPartition partition)
    {
        var assignment = partition.ExpertOfNeuron.SelectMany(layer => layer).ToArray();
        return $"grouped by experts {Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(assignment.AsSpan())))[..16]}";
    }

    /// <summary>
    /// Permutes <paramref name="model"/>'s FFN neurons in place into <paramref name="partition"/>'s expert order
    /// (<see cref="ExpertPartition.NeuronOrder"/>) and returns the partition that describes the grouped model: expert e is
    /// neurons e·n … (e+1)·n − 1 of every layer, the same neurons <paramref name="partition"/> gave expert e.
    /// </summary>
    public static ExpertPartition GroupByExpert(CausalLanguageModel model, ExpertPartition partition)
    {
        partition.CheckFits(model.Config, "the expert partition");
        if (model.Config.IntermediateSizes is not null) throw new ArgumentException("A model with per-layer FFN widths (a pruned model) cannot be grouped by a partition.", nameof(model));
        var orders = partition.NeuronOrder();
        using var guard = no_grad();
        for (var layer = 0; layer < partition.Layers; layer++)
        {
            using var scope = NewDisposeScope();
            var mlp = model.Layers[layer].Mlp;
            var order = tensor(orders[layer], device: mlp.DownProj.weight!.device);
            foreach (var projection in new[] { mlp.GateProj, mlp.UpProj })
            {
                projection.weight.copy_(projection.weight.index_select(0, order));
                projection.bias?.copy_(projection.bias.index_select(0, order));
            }
            mlp.DownProj.weight!.copy_(mlp.DownProj.weight.index_select(1, order));
        }
        return ExpertPartition.Contiguous(partition.Layers, partition.IntermediateSize, partition.Experts) with { Method = partition.Method, Seed = partition.Seed };
    }
}
