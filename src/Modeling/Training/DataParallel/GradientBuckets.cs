using System.Diagnostics;
using System.Globalization;
using System.Runtime.ExceptionServices;
using Babel.Modeling.Transformer;
using TorchSharp.Modules;

namespace Babel.Modeling.Training.DataParallel;

/// <summary>
/// A synchronous rank's gradient exchange by layer, overlapping the backward pass: the gradient buffer is cut into fixed
/// buckets — the top decoder layer with everything after it (final norm, head), each layer below it, the embeddings, then
/// the loss share and token count — and a layer's bucket starts through the <see cref="IGradientExchange"/> as soon as
/// every forward of the step that passed the layer has had its gradient come back through it (the model's
/// <see cref="CausalLanguageModel.GradientReadiness"/>; a student's answer and rationale forwards share one
/// backward), while the layers below are still differentiated. The step must be one backward of all its marked forwards
/// (a rank that accumulates several micro-batches is not observed: its earlier backwards would look final). Every rank
/// sends the same buckets in the same order (the rest when the backward is done), so the sums, added in rank order, are
/// the bits of a whole-array exchange.
/// </summary>
public sealed class GradientBuckets : IGradientReadiness
{
    private readonly GradientBuffer _buffer;
    private readonly IGradientExchange _exchange;
    // Parameter ranges [First, End) from the top layer down to the embeddings.
    private readonly (int First, int End)[] _buckets;
    private readonly int _layers;
    // Marked forwards of each layer whose gradient has not come back yet.
    private readonly int[] _outstanding;
    private int _step = -1;
    private int _sent;
    private Exception? _failure;

    public GradientBuckets(IEnumerable<(string Name, Parameter Parameter)> named, IGradientExchange exchange)
    {
        var parameters = named.ToList();
        _buffer = new GradientBuffer([.. parameters.Select(p => p.Parameter)], extra: 2);
        _exchange = exchange;
        var firsts = new List<int>();
        for (var layer = 0; ; layer++)
        {
            var prefix = string.Create(CultureInfo.InvariantCulture, $"model.layers.{layer}.");
            var first = parameters.FindIndex(p => p.Name.StartsWith(prefix, StringComparison.Ordinal));
            if (first < 0) break;
            firsts.Add(first);
        }
        _layers = firsts.Count;
        _outstanding = new int[_layers];
        var ends = firsts.Skip(1).Append(parameters.Count).ToList();
        _buckets = [.. Enumerable.Range(0, _layers).Reverse().Select(l => (firsts[l], ends[l])), (0, _layers > 0 ? firsts[0] : parameters.Count)];
    }

    /// <summary>Values per exchange: the gradients and the extra values.</summary>
    public int Values => _buffer.Values.Length;

    /// <summary>Starts a step: nothing of it is sent yet.</summary>
    public void Begin(int step)
    {
        _step = step;
        _sent = 0;
        _failure = null;
        Array.Clear(_outstanding);
    }

    public void Marked(int layer)
    {
        if (layer >= 0 && layer < _layers) _outstanding[layer]++;
    }

    /// <summary>
    /// Once the last marked forward's gradient is back through layer <paramref name="layer"/>, that layer's gradients and
    /// those of everything above it are complete: starts the buckets down to that layer's. Never throws (it runs inside
    /// libtorch's backward); a failure is thrown by <see cref="Finish"/>.
    /// </summary>
    public void Ready(int layer)
    {
        try
        {
            if (layer >= 0 && layer < _layers && --_outstanding[layer] == 0 && _failure is null) SendThrough(_layers - 1 - layer);
        }
        catch (Exception e)
        {
            _failure = e;
        }
    }

    /// <summary>
    /// After the step's last backward: starts what is left (with the loss share and tokens), waits for the sums, writes
    /// them into the gradients and returns the group's loss and tokens and how long this rank waited.
    /// </summary>
    public (double Loss, long Tokens, double WaitedSeconds) Finish(double loss, long tokens, CancellationToken cancellationToken)
    {
        // A group change met while sending is the rank's usual cue to rejoin; anything else is a failure of the step.
        if (_failure is GroupChangedException changed) ExceptionDispatchInfo.Throw(changed);
        if (_failure is { } failure) throw new InvalidOperationException($"Sending a layer's gradients during step {_step + 1} failed: {failure.Message}", failure);
        var started = Stopwatch.GetTimestamp();
        SendThrough(_buckets.Length - 1);
        _buffer.SetExtra([(float)loss, tokens]);
        _exchange.Start(_step, _buffer.Values, _buffer.GradientValues, _buffer.Values.Length - _buffer.GradientValues);
        _exchange.Finish(_step, _buffer.Values, cancellationToken);
        var sums = _buffer.Unflatten();
        return (sums[0], (long)Math.Round(sums[1]), Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    private void SendThrough(int bucket)
    {
        for (; _sent <= bucket; _sent++)
        {
            var (first, end) = _buckets[_sent];
            _buffer.Flatten(first, end);
            var (start, count) = _buffer.Range(first, end);
            if (count > 0) _exchange.Start(_step, _buffer.Values, start, count);
        }
    }
}
