using TorchSharp;
using static TorchSharp.torch;

namespace Babel.Modeling.Runtime;

/// <summary>
/// Scalars held alive through each native call. TorchSharp turns a number argument (and the default alpha of <c>a + b</c>)
/// into a temporary <see cref="Scalar"/> whose native handle is all the call keeps: a garbage collection started by another
/// thread can finalize it and free the native scalar while libtorch reads it ("Unknown scalar type" / "Expected false to
/// be true" in Scalar.h). A scalar that stays reachable is never freed: <see cref="One"/> for the forward's sums, and an
/// optimizer that holds its own (<see cref="AdamW"/>).
/// </summary>
public static class HeldScalars
{
    /// <summary>1, held for the life of the process: <c>a.add(b, HeldScalars.One)</c> is <c>a + b</c>.</summary>
    public static Scalar One { get; } = 1.ToScalar();

    /// <summary>
    /// TorchSharp's AdamW with every scalar argument held alive until its native call returns. TorchSharp's own
    /// <see cref="TorchSharp.Modules.AdamW.step"/> converts doubles to <see cref="Scalar"/>s implicitly and passes only their native handles; such
    /// a temporary is unreachable during the call, so a garbage collection started by another thread can run its finalizer
    /// and free the scalar while libtorch reads it ("Unknown scalar type" / "Expected false to be true" in Scalar.h), which
    /// several threads training in one process (data-parallel ranks, grid shards) made happen now and then. Same arithmetic,
    /// same operations in the same order, same state and checkpoint format as <see cref="TorchSharp.Modules.AdamW"/> (the type
    /// name is part of that format, so the class is called AdamW too): the weights are bit for bit
    /// those of TorchSharp's step (tested).
    /// </summary>
    public sealed class AdamW : TorchSharp.Modules.AdamW
    {
        public AdamW(IEnumerable<ParamGroup> groups, double lr, double beta1 = 0.9, double beta2 = 0.999, double weightDecay = 0)
            : base(groups, lr, beta1, beta2, eps: 1e-8, weight_decay: weightDecay)
        {
        }

        public override Tensor step(Func<Tensor>? closure = null)
        {
            return _step<ParamGroup>(group =>
            {
                var options = (Options)group.Options;
                if (options.amsgrad == true || options.maximize == true) throw new NotSupportedException("HeldScalars.AdamW implements AdamW without amsgrad and maximize.");
                var (beta1, beta2, eps) = (options.beta1!.Value, options.beta2!.Value, options.eps!.Value);
                var (weightDecay, lr) = (options.weight_decay!.Value, options.LearningRate!.Value);
                using var decay = (1 - lr * weightDecay).ToScalar();
                using var beta1Scalar = beta1.ToScalar();
                using var oneMinusBeta1 = (1 - beta1).ToScalar();
                using var beta2Scalar = beta2.ToScalar();
                using var oneMinusBeta2 = (1 - beta2).ToScalar();
                using var epsScalar = eps.ToScalar();
                foreach (var param in group.Parameters)
                {
                    var state = (State)_state[param.Handle];
                    var grad = param.grad;
                    if (grad is null) continue;
                    state.step += 1;
                    param.mul_(decay);
                    var biasCorrection1 = 1 - Math.Pow(beta1, state.step);
                    var biasCorrection2 = 1 - Math.Pow(beta2, state.step);
                    state.exp_avg.mul_(beta1Scalar).add_(grad, alpha: oneMinusBeta1);
                    state.exp_avg_sq.mul_(beta2Scalar).addcmul_(grad, grad, value: oneMinusBeta2);
                    using var correction2 = Math.Sqrt(biasCorrection2).ToScalar();
                    var denominator = state.exp_avg_sq.sqrt().div(correction2).add_(epsScalar);
                    using var stepSize = (-(lr / biasCorrection1)).ToScalar();
                    param.addcdiv_(state.exp_avg, denominator, value: stepSize);
                }
            }, closure);
        }
    }
}
