namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// DiLoCo's outer optimizer (Douillard et al. 2023, "DiLoCo: Distributed Low-Communication Training of Language Models",
/// Algorithm 1): after the replicas' local steps, the outer gradient is Δ = θ_global − mean of the replicas' weights, and
/// θ_global takes one step of SGD with Nesterov momentum on it (PyTorch's form: b ← μ·b + Δ; θ ← θ − η·(Δ + μ·b)).
/// Plain float arrays in parameter order, computed element by element in double and stored in float32, so every rank
/// that holds the same inputs computes the same bits.
/// </summary>
public sealed class OuterOptimizer(float[] global, double learningRate, double momentum)
{
    /// <summary>θ_global: the weights every replica starts its local steps from.</summary>
    public float[] Global { get; } = global;

    /// <summary>The momentum buffer b (zeros before the first outer step).</summary>
    public float[] Momentum { get; } = new float[global.Length];

    /// <summary>
    /// One outer step from the sum over <paramref name="replicas"/> replicas of their weights (added in rank order by the
    /// exchange). θ − η·(Δ + μ·b) is written as mean + (1 − η)·Δ − η·μ·b, the same number, so that with η = 1 and μ = 0
    /// the new θ_global is the replicas' mean to the bit (one replica: its own weights, as if no synchronisation happened).
    /// </summary>
    public void Step(ReadOnlySpan<float> sumOfReplicas, int replicas)
    {
        if (sumOfReplicas.Length != Global.Length) throw new ArgumentException($"{sumOfReplicas.Length} weights where {Global.Length} were expected.", nameof(sumOfReplicas));
        if (replicas < 1) throw new ArgumentOutOfRangeException(nameof(replicas));
        for (var i = 0; i < Global.Length; i++)
        {
            var mean = (double)sumOfReplicas[i] / replicas;
            var outerGradient = Global[i] - mean;
            var buffer = momentum * Momentum[i] + outerGradient;
            Momentum[i] = (float)buffer;
            Global[i] = (float)(mean + (1 - learningRate) * outerGradient - learningRate * momentum * buffer);
        }
    }
}
