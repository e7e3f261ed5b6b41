using Babel.Modeling.Checkpoints;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Transformer;

/// <summary>The TorchSharp model on the real trained stories260K, against llama2.c's own forward written as plain loops.</summary>
public class Stories260KTests
{
    [Fact]
    public void Converted_model_gives_the_logits_of_the_plain_loop_llama2c_forward()
    {
        TorchRuntime.Initialize();
        using var folder = new ScratchFolder();
        Llama2cCheckpoint.Convert(CheckpointTestFiles.Stories260K, folder.Path);
        using var model = CausalLanguageModel.Load(folder.Path);
        int[] tokens = [1, 403, 407, 261, 378, 434, 375, 280, 443, 45, 277, 329, 290, 369, 261, 296];
        var reference = new Llama2cReferenceForward(CheckpointTestFiles.Stories260K).Logits(tokens);
        using var guard = no_grad();
        using var logits = model.Forward(tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0));
        using var expected = tensor(reference.SelectMany(r => r).ToArray(), [tokens.Length, reference[0].Length]);
        GenerationTests.AssertClose(expected, logits[0], 1e-4);
    }

    [Fact]
    public void Greedy_generation_with_the_cache_follows_the_llama2c_reference_token_by_token()
    {
        TorchRuntime.Initialize();
        using var folder = new ScratchFolder();
        Llama2cCheckpoint.Convert(CheckpointTestFiles.Stories260K, folder.Path);
        using var model = CausalLanguageModel.Load(folder.Path);
        var reference = new Llama2cReferenceForward(CheckpointTestFiles.Stories260K).GreedyContinuation(1, 24);
        var generated = TextGenerator.Generate(model, [[1]], new SamplingOptions { MaxNewTokens = 24, StopAtEos = false })[0];
        Assert.Equal(reference.Select(r => r.Token), generated);
    }
}
