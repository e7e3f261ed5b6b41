using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Modeling.Transformer;

namespace Babel.UnitTests.Transformer;

/// <summary>Small randomly initialised models for tests of the model code itself.</summary>
internal static class TinyModels
{
    public static ModelConfig Config(bool qkvBias = false, bool tied = false, int heads = 4, int keyValueHeads = 2) => new()
    {
        Architecture = qkvBias ? ModelConfig.Qwen2Architecture : ModelConfig.LlamaArchitecture,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = heads,
        NumKeyValueHeads = keyValueHeads,
        HeadDim = 32 / heads,
        VocabSize = 61,
        MaxPositionEmbeddings = 128,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        TieWordEmbeddings = tied,
        AttentionBias = qkvBias,
        BosTokenId = 1,
        EosTokenId = 2,
    };

    public static CausalLanguageModel Create(ModelConfig config, long seed = 7)
    {
        TorchRuntime.Initialize();
        var model = new CausalLanguageModel(config);
        model.InitializeWeights(seed);
        // Larger than training-start weights, so that attention and the FFN shape the logits noticeably.
        using (TorchSharp.torch.no_grad())
        {
            var generator = new TorchSharp.torch.Generator((ulong)seed);
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (!name.Contains("norm", StringComparison.Ordinal)) parameter.mul_(10);
                else parameter.add_(TorchSharp.torch.rand(parameter.shape, generator: generator) - 0.5);
            }
        }
        model.eval();
        return model;
    }
}
