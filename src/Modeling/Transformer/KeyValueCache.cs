using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// Keys (after rotary embedding) and values of every layer for a batch, preallocated to a fixed capacity so
/// that decoding writes in place. Slot <c>s</c> holds the token fed at step <c>s</c>; with left padding some
/// slots hold pads, which <see cref="KeyValid"/> masks out of attention.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    /// <summary>An empty cache of <paramref name="capacity"/> slots in the model's element type <paramref name="dtype"/> (<see cref="CausalLanguageModel.Dtype"/>; float32 by default).</summary>
    public KeyValueCache(int layers, long batch, int keyValueHeads, int headDim, int capacity, Device? device = null, ScalarType? dtype = null)
    {
        Capacity = capacity;
        Keys = new Tensor[layers];
        Values = new Tensor[layers];
        for (var layer = 0; layer < layers; layer++)
        {
            Keys[layer] = zeros([batch, keyValueHeads, capacity, headDim], dtype, device: device);
            Values[layer] = zeros([batch, keyValueHeads, capacity, headDim], dtype, device: device);
        }
        // Slots are valid unless a prefill writes a pad there, so decoding needs no per-step write.
        KeyValid = ones([batch, capacity], ScalarType.Bool, device: device);
        NextPosition = zeros([batch], ScalarType.Int64, device: device);
    }

    public int Capacity { get; }
    /// <summary>Slots filled so far (the same for every row).</summary>
    public int Length { get; private set; }
    public Tensor[] Keys { get; }
    public Tensor[] Values { get; }
    /// <summary>[batch, capacity]: true where the slot holds a real token.</summary>
    public Tensor KeyValid { get; }
    /// <summary>True once any slot holds a pad; until then attention needs no key mask.</summary>
    public bool HasPadding { get; private set; }
    /// <summary>[batch]: the rotary position the next real token of each row takes.</summary>
    public Tensor NextPosition { get; }

    /// <summary>Records that <paramref name="tokens"/> more slots were filled with the given validity [batch, tokens].</summary>
    internal void Advance(int tokens, Tensor valid)
    {
        if (Length + tokens > Capacity)
        {
            throw new InvalidOperationException($"The key/value cache holds {Capacity} tokens; {Length + tokens} were requested.");
        }
        KeyValid.narrow(1, Length, tokens).copy_(valid);
        HasPadding |= !valid.all().item<bool>();
        NextPosition.add_(valid.sum(1));
        Length += tokens;
    }

    /// <summary>Records one decoded slot; the decoder has already written keys, values, validity and positions.</summary>
    internal void Extend() => Length++;

    public void Dispose()
    {
        foreach (var tensor in Keys.Concat(Values)) tensor.Dispose();
        KeyValid.Dispose();
        NextPosition.Dispose();
    }
}
