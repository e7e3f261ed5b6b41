using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Transformer;

/// <summary>The managed single-row decoding step against the torch step (taken when a hook is attached) and the full forward.</summary>
public class SingleRowStepTests
{
    /// <summary>A hook that changes nothing: it only sends the decoder down its torch path.</summary>
    private sealed class PassThrough : IFeedForwardHook
    {
        public Tensor OnIntermediate(int layer, Tensor gate, Tensor intermediate) => intermediate;
    }

    [Theory]
    [InlineData(32, 48, 1)]
    [InlineData(256, 512, 2)] // large enough that the matrix-vector products split across threads
    public void Single_row_steps_give_the_logits_of_the_torch_step_and_of_the_full_forward(int hidden, int intermediate, int threads)
    {
        var config = TinyModels.Config(qkvBias: true, heads: 4, keyValueHeads: 2) with
        {
            HiddenSize = hidden, HeadDim = hidden / 4, IntermediateSize = intermediate, MlpBias = true, SlidingWindow = 4, MaxWindowLayers = 1,
        };
        using var model = TinyModels.Create(config);
        TorchRuntime.Initialize(threads);
        try
        {
            using var guard = no_grad();
            long[] prompt = [1, 17, 33];
            long[] continuation = [42, 7, 7, 60, 3, 11, 5, 9, 21];
            using var full = model.Forward(tensor(prompt.Concat(continuation).ToArray()).unsqueeze(0));
            using var rowCache = new KeyValueCache(config.NumHiddenLayers, 1, 2, config.HeadDim, 16);
            using var torchCache = new KeyValueCache(config.NumHiddenLayers, 1, 2, config.HeadDim, 16);
            using var decoder = new CachedDecoder(model);
            model.Forward(tensor(prompt).unsqueeze(0), cache: rowCache).Dispose();
            model.Forward(tensor(prompt).unsqueeze(0), cache: torchCache).Dispose();
            for (var i = 0; i < continuation.Length; i++)
            {
                using var row = decoder.Step(tensor(new[] { continuation[i] }), rowCache);
                using var step = decoder.Step(tensor(new[] { continuation[i] }), torchCache, new PassThrough());
                GenerationTests.AssertClose(step, row, 1e-5);
                GenerationTests.AssertClose(full.select(1, prompt.Length + i), row, 1e-4);
            }
            GenerationTests.AssertClose(torchCache.Keys[1], rowCache.Keys[1], 1e-5);
            Assert.Equal(torchCache.NextPosition.data<long>().ToArray(), rowCache.NextPosition.data<long>().ToArray());
        }
        finally
        {
            TorchRuntime.Initialize(1);
        }
    }
}
