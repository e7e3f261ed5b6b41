namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// One rank of a data-parallel run: its index in a group of <paramref name="WorldSize"/> ranks, the exchange it sums
/// gradients through, and the run's <paramref name="MicroBatches"/>: the global batch is always cut into that many
/// blocks of rows, each a forward and backward of its own, and every rank takes a contiguous run of blocks. A full group
/// (one block per rank) and a group that lost ranks (several blocks per rank, accumulated) compute the same global
/// gradient; with two blocks it is the same bits.
/// </summary>
public sealed record DataParallelRank(int Rank, int WorldSize, int MicroBatches, IGradientExchange Exchange)
{
    /// <summary>Told after every step how long its parts took on this rank.</summary>
    public Action<DataParallelStepTiming>? Timed { get; init; }

    /// <summary>Rank 0 writes checkpoints, history and the final model; every rank holds the same weights.</summary>
    public bool IsLeader => Rank == 0;

    /// <summary>The micro-batches [first, first + count) this rank computes.</summary>
    public (int First, int Count) Blocks => Split(MicroBatches, WorldSize, Rank);

    /// <summary>Rows [start, start + count) of micro-batch <paramref name="block"/> of a global batch of <paramref name="batchSize"/> rows.</summary>
    public (int Start, int Count) RowsOf(int block, int batchSize) => Split(batchSize, MicroBatches, block);

    /// <summary>Part <paramref name="index"/> of <paramref name="total"/> items cut into <paramref name="parts"/> contiguous parts in order.</summary>
    public static (int Start, int Count) Split(int total, int parts, int index)
    {
        var start = (int)((long)index * total / parts);
        var end = (int)((long)(index + 1) * total / parts);
        return (start, end - start);
    }

    public DataParallelRank Validate()
    {
        if (WorldSize < 1 || Rank < 0 || Rank >= WorldSize) throw new ArgumentOutOfRangeException(nameof(Rank), $"Rank {Rank} is not in a group of {WorldSize}.");
        if (MicroBatches < WorldSize) throw new ArgumentOutOfRangeException(nameof(MicroBatches), $"{MicroBatches} micro-batches cannot feed {WorldSize} ranks.");
        return this;
    }
}

/// <summary>One step on one rank: its forward and backward, the gradient exchange, and the target tokens it computed.</summary>
public readonly record struct DataParallelStepTiming(int Step, double ComputeSeconds, double ExchangeSeconds, double StepSeconds, long RankTokens, int GradientValues);
