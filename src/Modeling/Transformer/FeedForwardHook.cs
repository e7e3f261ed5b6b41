using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// The one place where a forward pass exposes each layer's FFN neurons: expert counting and expert masking
/// attach here. A forward without a hook pays nothing for it.
/// </summary>
public interface IFeedForwardHook
{
    /// <summary>
    /// Called once per layer and forward with the gate pre-activation <paramref name="gate"/> and the
    /// intermediate activation <paramref name="intermediate"/> = SiLU(gate) ⊙ up, both [batch, tokens, intermediate_size].
    /// Returns the activation that feeds <c>down_proj</c>: <paramref name="intermediate"/> itself or a masked tensor.
    /// </summary>
    Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate);

    /// <summary>
    /// Lets a hook compute a layer's whole FFN output from its input <paramref name="hidden"/> [batch, tokens, hidden]
    /// in its own way (only the experts a router picks, for example); null keeps the dense path and
    /// <see cref="OnIntermediate"/>. The KV-cache decoder always takes the dense path.
    /// </summary>
    Tensor? ComputeFeedForward(int layer, FeedForward feedForward, Tensor hidden) => null;
}
