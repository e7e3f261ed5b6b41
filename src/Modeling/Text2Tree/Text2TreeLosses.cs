using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Babel.Modeling.Text2Tree;

/// <summary>
/// The training objectives of Text2Tree and of the baselines. Targets are dense [batch, labels] distributions
/// (multiclass: one-hot) or multi-hot vectors (multilabel), so mixed soft targets use the same code.
/// </summary>
public static class Text2TreeLosses
{
    /// <summary>The temperature the SSL loss is scaled against, τ/0.07 (as in the authors' code, after SupCon).</summary>
    public const double BaseTemperature = 0.07;

    /// <summary>
    /// The paper's label-similarity weights M [b, b] (the authors' <c>SimSurLoss</c>): row-softmax over every j, the sample
    /// itself included, of cos(e_i, e_j) with no temperature, where e_i is sample i's (L2-normalised) summed label
    /// embedding. A sample without labels is similar to itself alone; a similarity of exactly 0 is masked out (−10⁴), as
    /// there. Not detached: the SSL term trains the label embeddings.
    /// </summary>
    public static Tensor PaperSimilarityWeights(Tensor labelEmbeddings, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var states = F.normalize(targets.matmul(labelEmbeddings), p: 2, dim: 1);
        var empty = targets.sum(1).eq(0).to_type(states.dtype);
        var similarity = states.matmul(states.t()) + diag(empty);
        similarity = similarity - 10000 * similarity.eq(0).to_type(states.dtype);
        return similarity.softmax(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The paper's Similarity Surrogate Learning: −(τ/0.07)·(1/b) Σ_i Σ_j M_ij log p_ij / Σ_j M_ij, with
    /// p_ij = exp(ẑ_i·ẑ_j/τ) / Σ_{k≠i} exp(ẑ_i·ẑ_k/τ) over L2-normalised projected representations ẑ (self left out of
    /// the denominator only, so M_ii's term counts).
    /// </summary>
    public static Tensor PaperSimilaritySurrogate(Tensor features, Tensor weights, double tau)
    {
        using var scope = NewDisposeScope();
        var z = F.normalize(features, p: 2, dim: 1);
        var logits = z.matmul(z.t()) / tau;
        logits = logits - logits.amax([1], keepdim: true).detach();
        var diagonal = eye(z.shape[0], dtype: ScalarType.Bool, device: z.device);
        var logDenominator = logits.masked_fill(diagonal, double.NegativeInfinity).logsumexp(1, keepdim: true);
        var logProbabilities = logits - logDenominator;
        var mean = (weights * logProbabilities).sum(1) / weights.sum(1);
        return (-(tau / BaseTemperature) * mean.mean()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The paper's mixing: l_ij = stop-grad(M_ij / max_k M_ik) weighs the sample itself, z_i·l + z_j·(1 − l), so a
    /// dissimilar partner (small M_ij) is mixed in more. Returned as the share of the partner, 1 − l, the ratio
    /// <see cref="DissimilarityMixup"/> takes.
    /// </summary>
    public static Tensor PaperMixupRatios(Tensor weights)
    {
        using var scope = NewDisposeScope();
        var w = weights.detach();
        return (1 - w / w.amax([1], keepdim: true).clamp_min(1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The Text2Tree objective as the paper and its authors' code define it: (1 − λ)·L_DML + λ·L_SSL, with SSL on
    /// <paramref name="projected"/> (the projector's output) and DML on the pooled <paramref name="representations"/>.
    /// Without <paramref name="dissimilarityMixup"/> (the "SSL only" ablation) the classification term is the plain
    /// soft-label loss of the unmixed batch: (1 − λ)·L_CE + λ·L_SSL.
    /// </summary>
    public static (Tensor Total, Tensor Classification, Tensor Ssl) PaperText2Tree(Tensor representations, Tensor projected, Tensor targets, Tensor labelEmbeddings,
        Func<Tensor, Tensor> classify, bool multilabel, double lambda, double tau, bool dissimilarityMixup = true)
    {
        using var scope = NewDisposeScope();
        var weights = PaperSimilarityWeights(labelEmbeddings, targets);
        var ssl = PaperSimilaritySurrogate(projected, weights, tau);
        var classification = dissimilarityMixup
            ? DissimilarityMixup(representations, targets, PaperMixupRatios(weights), classify, multilabel)
            : SoftLabelLoss(classify(representations), targets, multilabel);
        var total = (1 - lambda) * classification + lambda * ssl;
        return (total.MoveToOuterDisposeScope(), classification.MoveToOuterDisposeScope(), ssl.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Babel's earlier variant (objective <c>babel</c>). Similarity weights w [b, b]: row-softmax over j ≠ i of cos(e_i, e_j) / τ, where e_i is the mean label embedding of
    /// sample i's labels. Not detached, so the similarity surrogate trains the label embeddings. w_ii = 0.
    /// </summary>
    public static Tensor SimilarityWeights(Tensor labelEmbeddings, Tensor targets, double tau)
    {
        using var scope = NewDisposeScope();
        var sampleLabels = targets.matmul(labelEmbeddings) / targets.sum(1, keepdim: true).clamp_min(1e-12);
        var normalised = F.normalize(sampleLabels, p: 2, dim: 1);
        var similarity = normalised.matmul(normalised.t()) / tau;
        var diagonal = eye(targets.shape[0], dtype: ScalarType.Bool, device: targets.device);
        return similarity.masked_fill(diagonal, double.NegativeInfinity).softmax(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Similarity Surrogate Learning: −(1/b) Σ_i Σ_{j≠i} w_ij log softmax_{k≠i}(ẑ_i·ẑ_k / τ)_j over L2-normalised text
    /// representations ẑ; the label-similarity weights w replace the hard positive of a supervised contrastive loss.
    /// </summary>
    public static Tensor SimilaritySurrogate(Tensor representations, Tensor weights, double tau)
    {
        using var scope = NewDisposeScope();
        var z = F.normalize(representations, p: 2, dim: 1);
        var diagonal = eye(z.shape[0], dtype: ScalarType.Bool, device: z.device);
        var logits = (z.matmul(z.t()) / tau).masked_fill(diagonal, double.NegativeInfinity);
        // The diagonal's log-probability is −∞ with weight 0; zero it so 0·∞ does not give NaN.
        var logProbabilities = logits.log_softmax(1).masked_fill(diagonal, 0.0);
        return (-(weights * logProbabilities).sum(1).mean()).MoveToOuterDisposeScope();
    }

    /// <summary>Babel's earlier mixing ratios (objective <c>babel</c>): the partner's share λ_ij = stop-grad(w_ij / max_k w_ik) [b, b], so similar partners mix in more.</summary>
    public static Tensor MixupRatios(Tensor weights)
    {
        using var scope = NewDisposeScope();
        var w = weights.detach();
        return (w / w.amax([1], keepdim: true).clamp_min(1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Dissimilarity Mixup Learning: every pair (i, j) of the batch (b² pairs, i = j included) is mixed as
    /// (1 − λ_ij)·z_i + λ_ij·z_j with the soft target (1 − λ_ij)·y_i + λ_ij·y_j, classified by <paramref name="classify"/>,
    /// and the soft-label loss is averaged over the pairs.
    /// </summary>
    public static Tensor DissimilarityMixup(Tensor representations, Tensor targets, Tensor ratios, Func<Tensor, Tensor> classify, bool multilabel)
    {
        using var scope = NewDisposeScope();
        long b = representations.shape[0], h = representations.shape[1], c = targets.shape[1];
        var lambda = ratios.unsqueeze(2);
        var mixed = (1 - lambda) * representations.unsqueeze(1) + lambda * representations.unsqueeze(0);
        var soft = (1 - lambda) * targets.unsqueeze(1) + lambda * targets.unsqueeze(0);
        var logits = classify(mixed.reshape(b * b, h));
        return SoftLabelLoss(logits, soft.reshape(b * b, c), multilabel).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Babel's earlier Text2Tree objective (objective <c>babel</c>): (1 − λ)·L_DML + λ·L_SSL, with both terms returned for
    /// logging and tests; without <paramref name="dissimilarityMixup"/>, (1 − λ)·L_CE + λ·L_SSL.
    /// </summary>
    public static (Tensor Total, Tensor Classification, Tensor Ssl) Text2Tree(Tensor representations, Tensor targets, Tensor labelEmbeddings, Func<Tensor, Tensor> classify,
        bool multilabel, double lambda, double tau, bool dissimilarityMixup = true)
    {
        using var scope = NewDisposeScope();
        var weights = SimilarityWeights(labelEmbeddings, targets, tau);
        var ssl = SimilaritySurrogate(representations, weights, tau);
        var classification = dissimilarityMixup
            ? DissimilarityMixup(representations, targets, MixupRatios(weights), classify, multilabel)
            : SoftLabelLoss(classify(representations), targets, multilabel);
        var total = (1 - lambda) * classification + lambda * ssl;
        return (total.MoveToOuterDisposeScope(), classification.MoveToOuterDisposeScope(), ssl.MoveToOuterDisposeScope());
    }

    /// <summary>Cross-entropy against soft targets (multiclass), or binary cross-entropy per label (multilabel); mean over rows.</summary>
    public static Tensor SoftLabelLoss(Tensor logits, Tensor targets, bool multilabel, Tensor? classWeights = null)
    {
        using var scope = NewDisposeScope();
        Tensor perElement = multilabel
            ? F.binary_cross_entropy_with_logits(logits, targets, reduction: nn.Reduction.None)
            : -(targets * logits.log_softmax(1));
        if (classWeights is not null) perElement = perElement * classWeights.unsqueeze(0);
        var rows = multilabel ? perElement.mean([1]) : perElement.sum(1);
        return rows.mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Focal loss −Σ_c y_c (1 − p_c)^γ log p_c (multiclass, p = softmax), or its binary form per label (multilabel); mean over rows.
    /// </summary>
    public static Tensor Focal(Tensor logits, Tensor targets, bool multilabel, double gamma)
    {
        using var scope = NewDisposeScope();
        Tensor loss;
        if (multilabel)
        {
            var p = logits.sigmoid();
            var pt = targets * p + (1 - targets) * (1 - p);
            var bce = F.binary_cross_entropy_with_logits(logits, targets, reduction: nn.Reduction.None);
            loss = ((1 - pt).pow(gamma) * bce).mean([1]).mean();
        }
        else
        {
            var logP = logits.log_softmax(1);
            loss = (-(targets * (1 - logP.exp()).pow(gamma) * logP)).sum(1).mean();
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Class weights for re-weighting: N / (C · n_c) for the training counts n_c (a class seen once weighs most), 0 for unseen classes.</summary>
    public static float[] InverseFrequencyWeights(IReadOnlyList<int> counts)
    {
        var total = (double)counts.Sum();
        var seen = counts.Count(c => c > 0);
        return [.. counts.Select(c => c > 0 ? (float)(total / (seen * (double)c)) : 0f)];
    }
}
