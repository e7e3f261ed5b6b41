using Babel.Modeling.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.Modeling.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Training;

/// <summary>
/// The overlapped exchange's two claims, checked against the finished backward pass: a layer is reported only once its
/// gradients and those of everything above it are final, and the buckets a rank starts cover the gradient buffer once.
/// </summary>
[Collection(TorchThreadsCollection.Name)]
public class GradientBucketsTests
{
    private static readonly PretrainingOptions _options = new() { Steps = 1, BatchSize = 4, SequenceLength = 32, Threads = 1, Seed = 5 };

    private static CausalLanguageModel Model()
    {
        var model = new CausalLanguageModel(ModelPresets.Create("tiny", vocabSize: 256, bosId: 1, eosId: 2, padId: 0));
        model.InitializeWeights(_options.Seed);
        model.train();
        return model;
    }

    private static void Backward(CausalLanguageModel model)
    {
        var (inputs, targets) = Pretrainer.Batch(DataParallelTrainingTests.Text(), _options, step: 0);
        Pretrainer.Loss(model.Forward(inputs), targets).backward();
    }

    /// <summary>Two forwards of different batches into one backward, as a student's answers and rationales.</summary>
    private static void TwoForwardsOneBackward(CausalLanguageModel model)
    {
        var text = DataParallelTrainingTests.Text();
        var (inputs, targets) = Pretrainer.Batch(text, _options, step: 0);
        var (moreInputs, moreTargets) = Pretrainer.Batch(text, _options with { SequenceLength = 16 }, step: 1);
        (Pretrainer.Loss(model.Forward(inputs), targets) + 0.3 * Pretrainer.Loss(model.Forward(moreInputs), moreTargets)).backward();
    }

    /// <summary>Step 0's buckets over <paramref name="exchange"/>, observing the model through <paramref name="backward"/>.</summary>
    private static GradientBuckets Observed(CausalLanguageModel model, IGradientExchange exchange, Action<CausalLanguageModel> backward)
    {
        var buckets = new GradientBuckets(model.named_parameters(), exchange);
        buckets.Begin(0);
        model.GradientReadiness = buckets;
        try
        {
            backward(model);
        }
        finally
        {
            model.GradientReadiness = null;
        }
        return buckets;
    }

    /// <summary>The model's gradients flattened in parameter order.</summary>
    private static float[] Gradients(CausalLanguageModel model) =>
        cat(model.named_parameters().Select(p => p.parameter.grad!.detach().reshape(-1)).ToList()).data<float>().ToArray();

    /// <summary>The parameters at or above decoder layer <paramref name="layer"/>: its own, the layers above, the final norm and the head.</summary>
    private static List<(string Name, Tensor Parameter)> AtOrAbove(CausalLanguageModel model, int layer) =>
        [.. model.named_parameters().Where(p => p.name.StartsWith("model.layers.", StringComparison.Ordinal)
            ? int.Parse(p.name.Split('.')[2], System.Globalization.CultureInfo.InvariantCulture) >= layer
            : p.name != "model.embed_tokens.weight").Select(p => (p.name, (Tensor)p.parameter))];

    [Fact]
    public void A_layer_is_reported_top_down_once_its_gradients_and_everything_above_it_are_final()
    {
        using var model = Model();
        var layers = model.Layers.Count;
        Assert.True(layers >= 2);
        var seen = new Dictionary<int, List<(string Name, Tensor Gradient)>>();
        var recorder = new Recorder(layer =>
            // A gradient not yet accumulated is missing here and fails the comparison below.
            seen[layer] = [.. AtOrAbove(model, layer).Select(p => (p.Name, p.Parameter.grad?.clone() ?? zeros(1)))]);
        model.GradientReadiness = recorder;
        Backward(model);
        model.GradientReadiness = null;

        Assert.Equal(Enumerable.Range(0, layers), recorder.Marked);
        Assert.Equal(Enumerable.Range(0, layers).Reverse(), recorder.Ready);
        foreach (var (layer, gradients) in seen)
        {
            foreach (var (name, gradient) in gradients)
            {
                var final = model.named_parameters().Single(p => p.name == name).parameter.grad!;
                Assert.True(gradient.shape.SequenceEqual(final.shape) && gradient.eq(final).all().item<bool>(), $"{name} changed after layer {layer} was reported");
            }
        }
    }

    [Fact]
    public void A_model_without_the_callback_records_no_marker_and_computes_the_same_gradients()
    {
        using var marked = Model();
        using var plain = Model();
        marked.GradientReadiness = new Recorder(_ => { });
        Backward(marked);
        Backward(plain);
        foreach (var ((name, a), (_, b)) in marked.named_parameters().Zip(plain.named_parameters()))
        {
            Assert.True(a.grad!.eq(b.grad!).all().item<bool>(), name);
        }
    }

    [Fact]
    public void The_buckets_start_during_the_backward_from_the_top_and_cover_the_buffer_once()
    {
        using var model = Model();
        var exchange = new RecordingExchange();
        var buckets = Observed(model, exchange, Backward);
        var duringBackward = exchange.Ranges.Count;
        var expected = Gradients(model);

        var (loss, tokens, _) = buckets.Finish(2.5, 17, CancellationToken.None);

        Assert.Equal(model.Layers.Count, duringBackward);
        // Top layer first: every range starts below the one before it, until the loss and tokens at the end.
        var gradientRanges = exchange.Ranges.Take(exchange.Ranges.Count - 1).ToList();
        Assert.True(gradientRanges.Zip(gradientRanges.Skip(1)).All(p => p.Second.Start + p.Second.Count == p.First.Start));
        Assert.Equal(0, gradientRanges[^1].Start);
        Assert.Equal(buckets.Values - 2, exchange.Ranges[^1].Start);
        Assert.Equal(buckets.Values, exchange.Ranges.Sum(r => r.Count));
        Assert.Equal((2.5, 17L), (loss, tokens));
        // The exchange saw exactly the gradients of the finished backward, in parameter order.
        Assert.Equal(expected, exchange.Finished!.Take(expected.Length));
    }

    [Fact]
    public void A_group_change_met_inside_the_backward_reaches_the_rank_as_a_group_change_and_other_failures_as_failures()
    {
        using var model = Model();
        foreach (var (thrown, expected) in new (Exception, Type)[]
        {
            (new GroupChangedException("a rank left"), typeof(GroupChangedException)),
            (new IOException("disk full"), typeof(InvalidOperationException)),
        })
        {
            // The callback runs inside libtorch's backward: it must not throw there.
            var buckets = Observed(model, new FailingExchange(thrown), Backward);
            Assert.IsType(expected, Assert.ThrowsAny<Exception>(() => buckets.Finish(1, 1, CancellationToken.None)));
            model.zero_grad();
        }
    }

    [Fact]
    public void With_two_forwards_in_one_backward_a_layer_is_sent_only_once_both_have_come_back_through_it()
    {
        using var model = Model();
        var exchange = new RecordingExchange();
        var buckets = Observed(model, exchange, TwoForwardsOneBackward);
        var duringBackward = exchange.Ranges.Count;
        var expected = Gradients(model);

        buckets.Finish(1, 1, CancellationToken.None);

        // Every layer went during the backward, each once, and what went was the final sum of both forwards' gradients.
        Assert.Equal(model.Layers.Count, duringBackward);
        Assert.Equal(buckets.Values, exchange.Ranges.Sum(r => r.Count));
        Assert.Equal(expected, exchange.Finished!.Take(expected.Length));
    }

    /// <summary>Records which layers a forward marked and in which order their gradients came back.</summary>
    private sealed class Recorder(Action<int> ready) : IGradientReadiness
    {
        public List<int> Marked { get; } = [];

        public List<int> Ready { get; } = [];

        void IGradientReadiness.Marked(int layer) => Marked.Add(layer);

        void IGradientReadiness.Ready(int layer)
        {
            Ready.Add(layer);
            ready(layer);
        }
    }

    private sealed class FailingExchange(Exception failure) : IGradientExchange
    {
        public void Start(int step, float[] values, int start, int count) => throw failure;

        public void Finish(int step, float[] values, CancellationToken cancellationToken) => throw new InvalidOperationException("Finish after a failed start.");
    }

    /// <summary>An exchange of one rank that records the ranges it is given and leaves the values as they are (a sum of one).</summary>
    private sealed class RecordingExchange : IGradientExchange
    {
        public List<(int Start, int Count)> Ranges { get; } = [];

        public float[]? Finished { get; private set; }

        public void Start(int step, float[] values, int start, int count) => Ranges.Add((start, count));

        public void Finish(int step, float[] values, CancellationToken cancellationToken) => Finished = [.. values];
    }
}
