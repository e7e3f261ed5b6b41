namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// One rank of a data-parallel run: its index in a group of <paramref name="WorldSize"/>, the exchange it sums gradients
/// through, and at most how many rows it puts through the model at once (<paramref name="MicroBatchRows"/>: a group that
/// lost ranks keeps the global batch by accumulating micro-batches of the original size).
/// </summary>
public sealed record DataParallelRank(int Rank, int WorldSize, int MicroBatchRows, IGradientExchange Exchange)
{
    /// <summary>Told after every step how long its parts took on this rank.</summary>
    public Action<DataParallelStepTiming>? Timed { get; init; }

    /// <summary>Rank 0 writes checkpoints, history and the final model; every rank holds the same weights.</summary>
    public bool IsLeader => Rank == 0;

    /// <summary>The rows [start, start + count) of a global batch of <paramref name="batchSize"/> rows this rank computes: contiguous blocks in rank order.</summary>
    public (int Start, int Count) Rows(int batchSize)
    {
        var start = (int)((long)Rank * batchSize / WorldSize);
        var end = (int)((long)(Rank + 1) * batchSize / WorldSize);
        return (start, end - start);
    }

    /// <summary>Rows per rank of <paramref name="ranks"/> ranks on a batch of <paramref name="batchSize"/> rows, rounded up: the micro-batch of a full group.</summary>
    public static int RowsPerRank(int batchSize, int ranks) => (batchSize + ranks - 1) / ranks;

    public DataParallelRank Validate()
    {
        if (WorldSize < 1 || Rank < 0 || Rank >= WorldSize) throw new ArgumentOutOfRangeException(nameof(Rank), $"Rank {Rank} is not in a group of {WorldSize}.");
        if (MicroBatchRows < 1) throw new ArgumentOutOfRangeException(nameof(MicroBatchRows), "A micro-batch holds at least one row.");
        return this;
    }
}

/// <summary>One step on one rank: its forward and backward, the gradient exchange, and the target tokens it computed.</summary>
public readonly record struct DataParallelStepTiming(int Step, double ComputeSeconds, double ExchangeSeconds, double StepSeconds, long RankTokens, int GradientValues);
