namespace Babel.Modeling.Transformer;

/// <summary>
/// Told which decoder layers a forward passed (<see cref="Marked"/>, at forward time) and, during the backward pass, when
/// the gradient has come back through each of them (<see cref="Ready"/>, from the top layer down; see
/// <see cref="GradientReadyMarker"/>). Once every marked pass of a layer is back, that layer's gradients and those of
/// everything above it are final.
/// </summary>
public interface IGradientReadiness
{
    /// <summary>A forward passed layer <paramref name="layer"/> (called at forward time).</summary>
    void Marked(int layer);

    /// <summary>One marked pass's gradient came back through layer <paramref name="layer"/>'s input (called inside libtorch's backward: must not throw).</summary>
    void Ready(int layer);
}
