using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Babel.Modeling.Transformer;

/// <summary>
/// One of the Hugging Face projections (q_proj, k_proj, v_proj; gate_proj, up_proj) that the model computes as rows of a
/// fused <see cref="Linear"/> (one matmul instead of two or three per layer). <see cref="weight"/> and <see cref="bias"/> are
/// views of the fused parameter's rows, so reading them, writing into them (loading a checkpoint) and saving them act on the
/// fused parameter; the checkpoint keeps the Hugging Face names and layout.
/// </summary>
public sealed class FusedProjection(Linear fused, long firstRow, long rows)
{
    /// <summary>The rows of the fused linear layer this projection owns.</summary>
    public long FirstRow => firstRow;
    public long Rows => rows;

    /// <summary>[rows, in]: a view of the fused weight's rows.</summary>
#pragma warning disable IDE1006 // named as TorchSharp's Linear names them, so callers read the same either way
    public Tensor weight => fused.weight!.narrow(0, firstRow, rows);

    /// <summary>[rows]: a view of the fused bias, or null without biases.</summary>
    public Tensor? bias => fused.bias?.narrow(0, firstRow, rows);
#pragma warning restore IDE1006
}
