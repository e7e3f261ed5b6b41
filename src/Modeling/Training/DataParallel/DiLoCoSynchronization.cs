using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using static TorchSharp.torch;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// One rank's side of DiLoCo (<see cref="PretrainingOptions.SyncEvery"/> &gt; 1): every H steps its replica's weights go
/// through the same <see cref="IGradientExchange"/> as gradients do (summed in rank order, so every rank gets the same
/// bits), the <see cref="OuterOptimizer"/> steps θ_global from their mean, and the replica starts again from θ_global.
/// A few values travel after the weights (the losses of the steps since the last synchronisation); at a checkpoint each
/// rank's inner AdamW state follows in a slot of its own, zeros in the others, so the sum is every rank's state and the
/// leader's checkpoint holds them all.
/// </summary>
public sealed class DiLoCoSynchronization
{
    /// <summary>The momentum's file in a checkpoint folder.</summary>
    public const string MomentumFileName = "outer-momentum.safetensors";

    private const string MomentumTensorName = "outer.momentum";

    private readonly IReadOnlyList<Tensor> _parameters;
    private readonly DataParallelRank _rank;
    private readonly int _parameterValues;

    public DiLoCoSynchronization(IReadOnlyList<Tensor> parameters, DataParallelRank rank, PretrainingOptions options)
    {
        _parameters = parameters;
        _rank = rank;
        _parameterValues = checked((int)parameters.Sum(p => p.numel()));
        var global = new float[_parameterValues];
        Flatten(global);
        Outer = new OuterOptimizer(global, options.OuterLearningRate, options.OuterMomentum);
    }

    /// <summary>θ_global and the outer momentum.</summary>
    public OuterOptimizer Outer { get; }

    /// <summary>Floats a synchronisation without inner states sends: the weights and <paramref name="extra"/> values.</summary>
    public int Values(int extra) => _parameterValues + extra;

    /// <summary>
    /// Sums the replicas' weights and <paramref name="extra"/> over the group, steps the outer optimizer and loads
    /// θ_global into this replica. Returns the summed extra values and, when <paramref name="innerState"/> is given (a
    /// checkpoint), every rank's inner state in rank order.
    /// </summary>
    public (float[] Extra, byte[][]? InnerStates) Synchronize(int step, ReadOnlySpan<float> extra, byte[]? innerState, CancellationToken cancellationToken)
    {
        var slot = innerState is null ? 0 : (innerState.Length + 2) / 3;
        var values = new float[_parameterValues + extra.Length + slot * _rank.WorldSize];
        Flatten(values);
        extra.CopyTo(values.AsSpan(_parameterValues));
        if (innerState is not null) Pack(innerState, values.AsSpan(_parameterValues + extra.Length + slot * _rank.Rank, slot));
        _rank.Exchange.SumInPlace(step, values, cancellationToken);
        Outer.Step(values.AsSpan(0, _parameterValues), _rank.WorldSize);
        Load(Outer.Global);
        var sums = values.AsSpan(_parameterValues, extra.Length).ToArray();
        if (innerState is null) return (sums, null);
        var states = new byte[_rank.WorldSize][];
        for (var r = 0; r < states.Length; r++) states[r] = Unpack(values.AsSpan(_parameterValues + sums.Length + slot * r, slot), innerState.Length);
        return (sums, states);
    }

    /// <summary>Writes the outer momentum into a checkpoint folder.</summary>
    public void SaveMomentum(string directory)
    {
        using var momentum = tensor(Outer.Momentum);
        SafeTensors.Write(Path.Combine(directory, MomentumFileName), new Dictionary<string, Tensor> { [MomentumTensorName] = momentum });
    }

    /// <summary>Reads the outer momentum of a checkpoint folder (θ_global is its model weights: checkpoints are taken at synchronisations).</summary>
    public void LoadMomentum(string directory)
    {
        var path = Path.Combine(directory, MomentumFileName);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} holds no {MomentumFileName}; it is not a checkpoint of a --sync-every run.");
        var tensors = SafeTensors.Read(path);
        try
        {
            var momentum = tensors[MomentumTensorName].data<float>().ToArray();
            if (momentum.Length != _parameterValues) throw new InvalidDataException($"{path} holds {momentum.Length} values where {_parameterValues} were expected.");
            momentum.CopyTo(Outer.Momentum, 0);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    private void Flatten(Span<float> values)
    {
        var offset = 0;
        foreach (var parameter in _parameters)
        {
            var count = (int)parameter.numel();
            using var flat = parameter.detach().contiguous();
            HostFloats.Of(flat).CopyTo(values.Slice(offset, count));
            offset += count;
        }
    }

    private void Load(float[] values)
    {
        using var noGrad = no_grad();
        var offset = 0;
        foreach (var parameter in _parameters)
        {
            var count = (int)parameter.numel();
            if (!parameter.is_contiguous() || parameter.dtype != ScalarType.Float32) throw new InvalidOperationException("DiLoCo replicas must hold contiguous float32 weights.");
            values.AsSpan(offset, count).CopyTo(HostFloats.Of(parameter));
            offset += count;
        }
    }

    /// <summary>Three bytes per float: integers below 2^24 are exact in float32, and adding the zeros of other slots keeps them.</summary>
    private static void Pack(byte[] bytes, Span<float> slot)
    {
        for (var i = 0; i < slot.Length; i++)
        {
            var b = 3 * i;
            slot[i] = bytes[b] | (b + 1 < bytes.Length ? bytes[b + 1] << 8 : 0) | (b + 2 < bytes.Length ? bytes[b + 2] << 16 : 0);
        }
    }

    private static byte[] Unpack(ReadOnlySpan<float> slot, int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < slot.Length; i++)
        {
            var value = (int)slot[i];
            for (var k = 0; k < 3 && 3 * i + k < length; k++) bytes[3 * i + k] = (byte)(value >> (8 * k));
        }
        return bytes;
    }
}
