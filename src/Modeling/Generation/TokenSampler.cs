using static TorchSharp.torch;

namespace Babel.Modeling.Generation;

/// <summary>Chooses the next token of every row from logits [batch, vocab] on the device, with a seeded generator.</summary>
public sealed class TokenSampler : IDisposable
{
    private readonly SamplingOptions _options;
    private readonly Generator? _generator;
    private readonly Generator[]? _rowGenerators;

    public TokenSampler(SamplingOptions options)
    {
        _options = options;
        if (options.IsGreedy) return;
        if (options.RowSeeds is { } seeds) _rowGenerators = [.. seeds.Select(s => new Generator((ulong)s))];
        else _generator = new Generator((ulong)options.Seed);
    }

    /// <summary>Next token ids [batch] (int64).</summary>
    public Tensor Next(Tensor logits)
    {
        if (_options.IsGreedy) return logits.argmax(-1);
        using var scope = NewDisposeScope();
        var scaled = logits / _options.Temperature;
        if (_options.TopK > 0 && _options.TopK < scaled.shape[^1])
        {
            var (values, _) = scaled.topk(_options.TopK, dim: -1);
            scaled = scaled.masked_fill(scaled < values.narrow(-1, _options.TopK - 1, 1), double.NegativeInfinity);
        }
        if (_options.TopP < 1.0)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);
            var probabilities = sorted.softmax(-1);
            // Drop a token when the tokens ranked above it already cover top-p; the first token always stays.
            var before = probabilities.cumsum(-1) - probabilities;
            var dropSorted = before > _options.TopP;
            var drop = zeros_like(dropSorted).scatter(-1, order, dropSorted);
            scaled = scaled.masked_fill(drop, double.NegativeInfinity);
        }
        var distribution = scaled.softmax(-1);
        if (_rowGenerators is null) return distribution.multinomial(1, generator: _generator).squeeze(-1).MoveToOuterDisposeScope();
        if (_rowGenerators.Length != distribution.shape[0]) throw new InvalidOperationException($"{_rowGenerators.Length} row seeds for a batch of {distribution.shape[0]} rows.");
        return cat([.. _rowGenerators.Select((g, row) => distribution[row].multinomial(1, generator: g))], 0).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _generator?.Dispose();
        foreach (var generator in _rowGenerators ?? []) generator.Dispose();
    }
}
