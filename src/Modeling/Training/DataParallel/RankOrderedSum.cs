using System.Numerics;
using System.Runtime.InteropServices;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// The sum of the ranks' gradients, always added in rank order (((g0 + g1) + g2) …), so the result does not depend on
/// which rank arrived first and every rank receives the same bits.
/// </summary>
public static class RankOrderedSum
{
    /// <summary>Writes the sum of <paramref name="parts"/> (index = rank) into <paramref name="total"/>.</summary>
    public static void Sum(IReadOnlyList<ReadOnlyMemory<float>> parts, Span<float> total)
    {
        if (parts.Count == 0) throw new ArgumentException("At least one rank's values are needed.", nameof(parts));
        foreach (var part in parts)
        {
            if (part.Length != total.Length) throw new ArgumentException($"A rank sent {part.Length} values where {total.Length} were expected.", nameof(parts));
        }
        parts[0].Span.CopyTo(total);
        for (var rank = 1; rank < parts.Count; rank++) AddInto(total, parts[rank].Span);
    }

    /// <summary>The sum in rank order of float32 arrays sent as bytes (index = rank), as bytes.</summary>
    public static byte[] SumFloat32Bytes(IReadOnlyList<byte[]> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("At least one rank's values are needed.", nameof(parts));
        var total = (byte[])parts[0].Clone();
        for (var rank = 1; rank < parts.Count; rank++)
        {
            if (parts[rank].Length != total.Length) throw new ArgumentException($"Rank {rank} sent {parts[rank].Length} bytes where {total.Length} were expected.", nameof(parts));
            AddInto(MemoryMarshal.Cast<byte, float>(total.AsSpan()), MemoryMarshal.Cast<byte, float>(parts[rank].AsSpan()));
        }
        return total;
    }

    /// <summary><paramref name="total"/>[i] += <paramref name="part"/>[i], element by element (each element's additions keep their order).</summary>
    public static void AddInto(Span<float> total, ReadOnlySpan<float> part)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= total.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                (new Vector<float>(total[i..]) + new Vector<float>(part[i..])).CopyTo(total[i..]);
            }
        }
        for (; i < total.Length; i++) total[i] += part[i];
    }
}
