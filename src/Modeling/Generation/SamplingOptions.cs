using Babel.Storage;

namespace Babel.Modeling.Generation;

/// <summary>How tokens are chosen. Temperature 0 is greedy; top-k 0 and top-p 1 disable those filters.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 64;
    public double Temperature { get; init; }
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    public long Seed { get; init; }
    /// <summary>One seed per batch row: each row samples from its own generator, so a row's tokens do not depend on the other rows.</summary>
    public IReadOnlyList<long>? RowSeeds { get; init; }
    /// <summary>Stop a row at its first end-of-sequence token (which is kept in the output).</summary>
    public bool StopAtEos { get; init; } = true;
    /// <summary>
    /// The ids that end a row when <see cref="StopAtEos"/> (e.g. <see cref="Chat.PromptFormat.StopTokenIds"/>: every EOS id of
    /// an instruction-tuned checkpoint); null means the model config's <c>eos_token_id</c> alone.
    /// </summary>
    public IReadOnlyCollection<int>? EosTokenIds { get; init; }

    public bool IsGreedy => Temperature <= 0;

    public SamplingOptions Validate()
    {
        if (MaxNewTokens < 0) throw new UserInputException($"--max-new-tokens must be zero or more (got {MaxNewTokens}).");
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new UserInputException($"--temperature must be zero (greedy) or positive (got {Temperature}).");
        if (TopK < 0) throw new UserInputException($"--top-k must be zero (off) or positive (got {TopK}).");
        if (!(TopP > 0 && TopP <= 1)) throw new UserInputException($"--top-p must be in (0, 1] (got {TopP}).");
        return this;
    }
}
