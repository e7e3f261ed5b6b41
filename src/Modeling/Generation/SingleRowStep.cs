using System.Runtime.Intrinsics;

namespace Babel.Modeling.Generation;

/// <summary>
/// One float32 decoding step of a single row (batch 1) on the CPU in managed SIMD code, reading the weights
/// <see cref="CachedDecoder"/> prepared and the key/value cache in place (no copies, no torch calls but the logits'
/// allocation). At batch 1 every torch call costs microseconds and each matrix is used once per step, so a small model is
/// bound by call overhead and a large one by streaming its weights: plain dot products over rows, split across threads
/// for the large matrices, do both well (see docs/benchmarks.md, "Decode and forward speed").
/// </summary>
internal sealed unsafe class SingleRowStep
{
    // Below this many multiply-adds a matrix-vector product stays on the calling thread: a fork costs microseconds.
    private const long ParallelWork = 1 << 16;

    private readonly int _hidden, _heads, _keyValueHeads, _headDim, _queryWidth, _keyWidth, _vocab;
    private readonly int[] _intermediate;
    private readonly int?[] _window;
    private readonly float _epsilon;
    private readonly int _threads;
    private readonly float[] _x, _normed, _projected, _roped, _attended, _gateUp, _activation;
    private float[] _scores = new float[256];

    public SingleRowStep(int hidden, int heads, int keyValueHeads, int headDim, int[] intermediate, int?[] window, int vocab, double epsilon, int threads)
    {
        (_hidden, _heads, _keyValueHeads, _headDim, _vocab) = (hidden, heads, keyValueHeads, headDim, vocab);
        (_queryWidth, _keyWidth) = (heads * headDim, keyValueHeads * headDim);
        _intermediate = intermediate;
        _window = window;
        _epsilon = (float)epsilon;
        _threads = Math.Max(1, threads);
        var widest = intermediate.Max();
        _x = new float[hidden];
        _normed = new float[Math.Max(hidden, widest)];
        _projected = new float[_queryWidth + 2 * _keyWidth];
        _roped = new float[_queryWidth + _keyWidth];
        _attended = new float[_queryWidth];
        _gateUp = new float[2 * widest];
        _activation = new float[widest];
    }

    /// <summary>The parameters of one layer, the model's own: norm gains, and [out, in] rows of the fused q/k/v, o, fused gate/up and down projections.</summary>
    public struct Layer(float* inputGain, float* qkv, float* qkvBias, float* output, float* postAttentionGain, float* gateUp, float* gateUpBias, float* down, float* downBias)
    {
        public readonly float* InputGain = inputGain, Qkv = qkv, QkvBias = qkvBias, Output = output, PostAttentionGain = postAttentionGain,
            GateUp = gateUp, GateUpBias = gateUpBias, Down = down, DownBias = downBias;
        /// <summary>This layer's cache tensors [1, key/value heads, capacity, head dim].</summary>
        public float* Keys, Values;
    }

    /// <summary>
    /// Feeds <paramref name="token"/> at <paramref name="position"/> into cache slot <paramref name="slot"/> of capacity
    /// <paramref name="capacity"/> and writes the logits into <paramref name="logits"/>. <paramref name="rotaryTable"/> holds per
    /// position cos, then sin with each head's first half negated, over the q and k heads.
    /// </summary>
    public void Run(long token, long position, int slot, int capacity, float* embedding, ReadOnlySpan<Layer> layers, float* rotaryTable, float* finalGain, float* head, float* logits)
    {
        var rotaryWidth = _queryWidth + _keyWidth;
        var cos = rotaryTable + position * 2 * rotaryWidth;
        var sin = cos + rotaryWidth;
        new ReadOnlySpan<float>(embedding + token * _hidden, _hidden).CopyTo(_x);
        var span = slot + 1;
        var scale = 1f / MathF.Sqrt(_headDim);
        var groups = _heads / _keyValueHeads;
        fixed (float* x = _x, normed = _normed, projected = _projected, roped = _roped, attended = _attended, gateUp = _gateUp, activation = _activation)
        {
            for (var i = 0; i < layers.Length; i++)
            {
                var w = layers[i];
                Normalize(x, w.InputGain, normed);
                var rows = rotaryWidth + _keyWidth;
                MatrixVector(w.Qkv, normed, projected, rows, _hidden, accumulate: false);
                if (w.QkvBias != null) Add(projected, w.QkvBias, rows);
                // RoPE on q and k: x·cos + rotate_half(x)·sin, rotate_half's sign carried by the table's sin.
                var half = _headDim / 2;
                for (var h = 0; h < rotaryWidth; h += _headDim)
                {
                    for (var j = 0; j < half; j++)
                    {
                        var (a, b) = (h + j, h + half + j);
                        roped[a] = projected[a] * cos[a] + projected[b] * sin[a];
                        roped[b] = projected[b] * cos[b] + projected[a] * sin[b];
                    }
                }
                var value = projected + rotaryWidth;
                for (var h = 0; h < _keyValueHeads; h++)
                {
                    var offset = ((long)h * capacity + slot) * _headDim;
                    new ReadOnlySpan<float>(roped + _queryWidth + h * _headDim, _headDim).CopyTo(new Span<float>(w.Keys + offset, _headDim));
                    new ReadOnlySpan<float>(value + h * _headDim, _headDim).CopyTo(new Span<float>(w.Values + offset, _headDim));
                }
                var start = _window[i] is { } window ? Math.Max(0, span - window) : 0;
                Attend(roped, w.Keys, w.Values, attended, start, span, capacity, groups, scale);
                MatrixVector(w.Output, attended, x, _hidden, _queryWidth, accumulate: true);

                Normalize(x, w.PostAttentionGain, normed);
                var width = _intermediate[i];
                MatrixVector(w.GateUp, normed, gateUp, 2 * width, _hidden, accumulate: false);
                if (w.GateUpBias != null) Add(gateUp, w.GateUpBias, 2 * width);
                for (var j = 0; j < width; j++)
                {
                    var g = gateUp[j];
                    activation[j] = g / (1f + MathF.Exp(-g)) * gateUp[width + j];
                }
                MatrixVector(w.Down, activation, x, _hidden, width, accumulate: true);
                if (w.DownBias != null) Add(x, w.DownBias, _hidden);
            }
            Normalize(x, finalGain, normed);
            MatrixVector(head, normed, logits, _vocab, _hidden, accumulate: false);
        }
    }

    /// <summary>Grouped-query attention of every query head over slots [start, span) of its key/value head.</summary>
    private void Attend(float* query, float* keys, float* values, float* output, int start, int span, int capacity, int groups, float scale)
    {
        if (_scores.Length < span) _scores = new float[Math.Max(span, 2 * _scores.Length)];
        fixed (float* scores = _scores)
        {
            for (var h = 0; h < _heads; h++)
            {
                var q = query + h * _headDim;
                var kvOffset = (long)(h / groups) * capacity * _headDim;
                var max = float.NegativeInfinity;
                for (var t = start; t < span; t++)
                {
                    var s = Dot(q, keys + kvOffset + (long)t * _headDim, _headDim) * scale;
                    scores[t] = s;
                    if (s > max) max = s;
                }
                var sum = 0f;
                for (var t = start; t < span; t++)
                {
                    var e = MathF.Exp(scores[t] - max);
                    scores[t] = e;
                    sum += e;
                }
                var o = output + h * _headDim;
                new Span<float>(o, _headDim).Clear();
                var inverse = 1f / sum;
                for (var t = start; t < span; t++) AddScaled(o, values + kvOffset + (long)t * _headDim, scores[t] * inverse, _headDim);
            }
        }
    }

    /// <summary>RMSNorm: x / sqrt(mean(x²) + ε) times the gain.</summary>
    private void Normalize(float* x, float* gain, float* output)
    {
        var scale = 1f / MathF.Sqrt(Dot(x, x, _hidden) / _hidden + _epsilon);
        for (var j = 0; j < _hidden; j++) output[j] = x[j] * scale * gain[j];
    }

    /// <summary>y = W v (or y += W v) for W [rows, columns] row-major; rows split across threads when the product is large.</summary>
    private void MatrixVector(float* matrix, float* vector, float* output, int rows, int columns, bool accumulate)
    {
        if (_threads == 1 || (long)rows * columns < ParallelWork)
        {
            RowsTimesVector(matrix, vector, output, 0, rows, columns, accumulate);
            return;
        }
        var chunk = (rows + _threads - 1) / _threads;
        var (m, v, y) = ((nint)matrix, (nint)vector, (nint)output);
        Parallel.For(0, _threads, new ParallelOptions { MaxDegreeOfParallelism = _threads }, part =>
        {
            var first = part * chunk;
            RowsTimesVector((float*)m, (float*)v, (float*)y, first, Math.Min(rows, first + chunk), columns, accumulate);
        });
    }

    private static void RowsTimesVector(float* matrix, float* vector, float* output, int first, int end, int columns, bool accumulate)
    {
        for (var r = first; r < end; r++)
        {
            var dot = Dot(matrix + (long)r * columns, vector, columns);
            output[r] = accumulate ? output[r] + dot : dot;
        }
    }

    private static void Add(float* target, float* addend, int length)
    {
        for (var j = 0; j < length; j++) target[j] += addend[j];
    }

    private static void AddScaled(float* target, float* source, float factor, int length)
    {
        var j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(factor);
            for (; j <= length - 8; j += 8) Vector256.Store(Vector256.Load(target + j) + Vector256.Load(source + j) * f, target + j);
        }
        for (; j < length; j++) target[j] += source[j] * factor;
    }

    private static float Dot(float* a, float* b, int length)
    {
        var j = 0;
        var sum = 0f;
        if (Vector512.IsHardwareAccelerated && length >= 64)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; j <= length - 64; j += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + j), Vector512.Load(b + j), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + j + 16), Vector512.Load(b + j + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + j + 32), Vector512.Load(b + j + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + j + 48), Vector512.Load(b + j + 48), s3);
            }
            for (; j <= length - 16; j += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + j), Vector512.Load(b + j), s0);
            sum = Vector512.Sum(s0 + s1 + (s2 + s3));
        }
        else if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            Vector256<float> s0 = default, s1 = default;
            for (; j <= length - 16; j += 16)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + j), Vector256.Load(b + j), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + j + 8), Vector256.Load(b + j + 8), s1);
            }
            for (; j <= length - 8; j += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + j), Vector256.Load(b + j), s0);
            sum = Vector256.Sum(s0 + s1);
        }
        for (; j < length; j++) sum += a[j] * b[j];
        return sum;
    }
}
