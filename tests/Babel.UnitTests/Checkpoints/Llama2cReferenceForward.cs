using System.Buffers.Binary;

namespace Babel.UnitTests.Checkpoints;

/// <summary>
/// llama2.c's <c>run.c</c> forward in plain loops, reading the legacy <c>.bin</c> itself (not through the converter):
/// RMSNorm, interleaved RoPE (pairs 2i, 2i+1; theta 10000), grouped-query attention over a growing KV cache, SwiGLU.
/// </summary>
public sealed class Llama2cReferenceForward
{
    private const float Epsilon = 1e-5f;
    private const float RopeTheta = 10000f;

    private readonly int _dim, _hidden, _layers, _heads, _kvHeads, _vocab, _seqLen;
    private readonly float[] _embedding, _rmsAtt, _wq, _wk, _wv, _wo, _rmsFfn, _w1, _w2, _w3, _rmsFinal, _classifier;

    public Llama2cReferenceForward(string binPath)
    {
        var bytes = File.ReadAllBytes(binPath);
        int Header(int i) => BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * i));
        (_dim, _hidden, _layers, _heads, _kvHeads, _seqLen) = (Header(0), Header(1), Header(2), Header(3), Header(4), Header(6));
        var shared = Header(5) > 0;
        _vocab = Math.Abs(Header(5));
        var headSize = _dim / _heads;
        var kvDim = _kvHeads * headSize;
        var position = 28;
        float[] Take(long count)
        {
            var values = new float[count];
            for (var i = 0; i < count; i++, position += 4) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(position));
            return values;
        }
        _embedding = Take((long)_vocab * _dim);
        _rmsAtt = Take((long)_layers * _dim);
        _wq = Take((long)_layers * _dim * _dim);
        _wk = Take((long)_layers * kvDim * _dim);
        _wv = Take((long)_layers * kvDim * _dim);
        _wo = Take((long)_layers * _dim * _dim);
        _rmsFfn = Take((long)_layers * _dim);
        _w1 = Take((long)_layers * _hidden * _dim);
        _w2 = Take((long)_layers * _dim * _hidden);
        _w3 = Take((long)_layers * _hidden * _dim);
        _rmsFinal = Take(_dim);
        position += 2 * _seqLen * (headSize / 2) * 4;
        _classifier = shared ? _embedding : Take((long)_vocab * _dim);
    }

    public int VocabSize => _vocab;

    /// <summary>Logits for every position of <paramref name="tokens"/>, run token by token as run.c does.</summary>
    public float[][] Logits(int[] tokens)
    {
        var cache = NewCache(tokens.Length);
        return tokens.Select((token, pos) => Step(token, pos, cache)).ToArray();
    }

    /// <summary>run.c at temperature 0: <paramref name="count"/> argmax tokens after <paramref name="start"/>, with their probabilities.</summary>
    public (int Token, float Probability)[] GreedyContinuation(int start, int count)
    {
        var cache = NewCache(count);
        var result = new (int, float)[count];
        var token = start;
        for (var pos = 0; pos < count; pos++)
        {
            var logits = Step(token, pos, cache);
            token = Array.IndexOf(logits, logits.Max());
            Softmax(logits);
            result[pos] = (token, logits[token]);
        }
        return result;
    }

    private (float[,,] Keys, float[,,] Values) NewCache(int positions)
    {
        var kvDim = _kvHeads * (_dim / _heads);
        return (new float[_layers, positions, kvDim], new float[_layers, positions, kvDim]);
    }

    private float[] Step(int token, int pos, (float[,,] Keys, float[,,] Values) cache)
    {
        var headSize = _dim / _heads;
        var kvDim = _kvHeads * headSize;
        var groupSize = _heads / _kvHeads;
        var (keyCache, valueCache) = cache;
        var x = new float[_dim];
        Array.Copy(_embedding, (long)token * _dim, x, 0, _dim);
        for (var l = 0; l < _layers; l++)
        {
            var xb = RmsNorm(x, _rmsAtt, l * _dim);
            var q = MatVec(_wq, (long)l * _dim * _dim, xb, _dim);
            var k = MatVec(_wk, (long)l * kvDim * _dim, xb, kvDim);
            var v = MatVec(_wv, (long)l * kvDim * _dim, xb, kvDim);
            for (var i = 0; i < _dim; i += 2)
            {
                var headDim = i % headSize;
                var frequency = 1.0f / MathF.Pow(RopeTheta, headDim / (float)headSize);
                var angle = pos * frequency;
                var (cos, sin) = (MathF.Cos(angle), MathF.Sin(angle));
                Rotate(q, i, cos, sin);
                if (i < kvDim) Rotate(k, i, cos, sin);
            }
            for (var i = 0; i < kvDim; i++)
            {
                keyCache[l, pos, i] = k[i];
                valueCache[l, pos, i] = v[i];
            }
            var attended = new float[_dim];
            for (var h = 0; h < _heads; h++)
            {
                var kvOffset = h / groupSize * headSize;
                var scores = new float[pos + 1];
                for (var t = 0; t <= pos; t++)
                {
                    var score = 0f;
                    for (var i = 0; i < headSize; i++) score += q[h * headSize + i] * keyCache[l, t, kvOffset + i];
                    scores[t] = score / MathF.Sqrt(headSize);
                }
                Softmax(scores);
                for (var t = 0; t <= pos; t++)
                {
                    for (var i = 0; i < headSize; i++) attended[h * headSize + i] += scores[t] * valueCache[l, t, kvOffset + i];
                }
            }
            var output = MatVec(_wo, (long)l * _dim * _dim, attended, _dim);
            for (var i = 0; i < _dim; i++) x[i] += output[i];

            xb = RmsNorm(x, _rmsFfn, l * _dim);
            var gate = MatVec(_w1, (long)l * _hidden * _dim, xb, _hidden);
            var up = MatVec(_w3, (long)l * _hidden * _dim, xb, _hidden);
            for (var i = 0; i < _hidden; i++) gate[i] = gate[i] * (1f / (1f + MathF.Exp(-gate[i]))) * up[i];
            var down = MatVec(_w2, (long)l * _dim * _hidden, gate, _dim);
            for (var i = 0; i < _dim; i++) x[i] += down[i];
        }
        return MatVec(_classifier, 0, RmsNorm(x, _rmsFinal, 0), _vocab);
    }

    private static void Rotate(float[] vector, int i, float cos, float sin)
    {
        var (v0, v1) = (vector[i], vector[i + 1]);
        vector[i] = v0 * cos - v1 * sin;
        vector[i + 1] = v0 * sin + v1 * cos;
    }

    private float[] RmsNorm(float[] x, float[] weights, int offset)
    {
        var sum = 0f;
        foreach (var value in x) sum += value * value;
        var scale = 1f / MathF.Sqrt(sum / x.Length + Epsilon);
        var result = new float[_dim];
        for (var i = 0; i < _dim; i++) result[i] = weights[offset + i] * (scale * x[i]);
        return result;
    }

    // W (rows × x.Length, row-major, starting at offset) @ x, as run.c's matmul.
    private static float[] MatVec(float[] weights, long offset, float[] x, int rows)
    {
        var result = new float[rows];
        for (var r = 0; r < rows; r++)
        {
            var sum = 0f;
            var row = offset + (long)r * x.Length;
            for (var c = 0; c < x.Length; c++) sum += weights[row + c] * x[c];
            result[r] = sum;
        }
        return result;
    }

    private static void Softmax(float[] values)
    {
        var max = values.Max();
        var sum = 0f;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = MathF.Exp(values[i] - max);
            sum += values[i];
        }
        for (var i = 0; i < values.Length; i++) values[i] /= sum;
    }
}
