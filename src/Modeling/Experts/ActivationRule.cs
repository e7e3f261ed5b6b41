using System.Globalization;
using Babel.Storage;

namespace Babel.Modeling.Experts;

/// <summary>
/// When an expert counts as activated for a token: <see cref="TopK"/> (<c>topk:K</c>) or <see cref="Threshold"/>
/// (<c>threshold:T</c>). <see cref="object.ToString"/> gives the canonical text recorded in <c>activations.json</c>.
/// </summary>
public abstract record ActivationRule
{
    public const string Forms = "'topk:K' (K experts per token, 1 ≤ K ≤ experts) or 'threshold:T' (0 < T ≤ 1, the fraction of an expert's neurons with a positive gate)";

    private protected ActivationRule()
    {
    }

    /// <summary>Parses <c>topk:K</c> or <c>threshold:T</c>; anything else is a <see cref="UserInputException"/>.</summary>
    public static ActivationRule Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new UserInputException("No activation rule is given; use topk:K or threshold:T.");
        var separator = text.IndexOf(':', StringComparison.Ordinal);
        var kind = separator < 0 ? text.Trim() : text[..separator].Trim();
        var value = separator < 0 ? "" : text[(separator + 1)..].Trim();
        switch (kind.ToLowerInvariant())
        {
            case "topk" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var k) && k >= 1:
                return new TopK(k);
            case "threshold" when double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var t) && t > 0 && t <= 1:
                return new Threshold(t);
            default:
                throw new UserInputException($"Activation rule '{text}' is not valid; use {Forms}.");
        }
    }

    /// <summary>Checks that the rule makes sense for <paramref name="partition"/> (K at most the number of experts).</summary>
    public abstract ActivationRule CheckFits(ExpertPartition partition);

    /// <summary>Per token and layer, the <see cref="K"/> experts with the largest L1 norm of their neurons' intermediate activations.</summary>
    public sealed record TopK : ActivationRule
    {
        public TopK(int k)
        {
            if (k < 1) throw new UserInputException($"Activation rule 'topk:{k}' is not valid; use {Forms}.");
            K = k;
        }

        public int K { get; }

        public override ActivationRule CheckFits(ExpertPartition partition) => K <= partition.Experts
            ? this
            : throw new UserInputException($"Activation rule '{this}' asks for more experts than the partition's {partition.Experts}; choose K ≤ {partition.Experts}.");

        public override string ToString() => $"topk:{K.ToString(CultureInfo.InvariantCulture)}";
    }

    /// <summary>An expert counts when at least a fraction <see cref="Fraction"/> of its neurons have a positive gate pre-activation.</summary>
    public sealed record Threshold : ActivationRule
    {
        public Threshold(double fraction)
        {
            if (!(fraction > 0 && fraction <= 1)) throw new UserInputException($"Activation rule 'threshold:{fraction.ToString("R", CultureInfo.InvariantCulture)}' is not valid; use {Forms}.");
            Fraction = fraction;
        }

        public double Fraction { get; }

        /// <summary>
        /// The least number of positive-gate neurons, out of <paramref name="neuronsPerExpert"/>, that activates an expert:
        /// ⌈T·m⌉, with a tolerance so that a decimal T such as 0.3 (stored as 0.30000000000000004·m) does not round up.
        /// </summary>
        public long MinimumPositive(int neuronsPerExpert) => Math.Max(1, (long)Math.Ceiling(Fraction * neuronsPerExpert - 1e-9));

        public override ActivationRule CheckFits(ExpertPartition partition) => this;

        public override string ToString() => $"threshold:{Fraction.ToString("R", CultureInfo.InvariantCulture)}";
    }
}
