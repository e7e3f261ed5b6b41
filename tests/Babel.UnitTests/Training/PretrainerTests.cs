using Babel.Modeling.Training;
using Babel.Modeling.Transformer;
using Babel.UnitTests.Transformer;
using Xunit;

namespace Babel.UnitTests.Training;

public class PretrainerTests
{
    private static readonly PretrainingOptions _options = new()
    {
        Steps = 12, BatchSize = 4, SequenceLength = 16, LearningRate = 1e-2, CheckpointInterval = 5, Threads = 1, Seed = 5,
    };

    private static readonly long[] PinnedWindowStarts = [1435, 2608, 1243, 1573];

    private static TokenStream PatternedStream()
    {
        // A learnable stream: a repeating pattern with a little seeded noise.
        var random = new Random(3);
        return new TokenStream([.. Enumerable.Range(0, 3000).Select(i => (long)(i % 7 == 0 ? random.Next(3, 61) : 3 + i % 11))]);
    }

    private static CausalLanguageModel FreshModel()
    {
        var model = new CausalLanguageModel(TinyModels.Config());
        model.InitializeWeights(_options.Seed);
        return model;
    }

    [Fact]
    public void Learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor()
    {
        var options = new PretrainingOptions { Steps = 100, WarmupFraction = 0.1, LearningRate = 1.0, MinLearningRateRatio = 0.1 };
        Assert.Equal(0.1, options.LearningRateAt(0), 12);
        Assert.Equal(1.0, options.LearningRateAt(9), 12);
        // Halfway through the decay the cosine is at its midpoint: 0.1 + 0.9 · 0.5.
        Assert.Equal(0.55, options.LearningRateAt(10 + 45), 12);
        Assert.Equal(0.1, options.LearningRateAt(100), 12);
    }

    [Fact]
    public void Batches_are_a_pure_function_of_seed_and_step()
    {
        var stream = PatternedStream();
        Assert.Equal(stream.WindowStarts(5, 3, 4, 16), stream.WindowStarts(5, 3, 4, 16));
        Assert.NotEqual(stream.WindowStarts(5, 3, 4, 16), stream.WindowStarts(5, 4, 4, 16));
        // The same in every process: pinned values, so a process-randomised hash would fail here.
        Assert.Equal(PinnedWindowStarts, stream.WindowStarts(5, 3, 4, 16));
        var (inputs, targets) = Pretrainer.Batch(stream, _options, 2);
        // Targets are the inputs shifted by one token.
        Assert.True(inputs.narrow(1, 1, 15).eq(targets.narrow(1, 0, 15)).all().item<bool>());
    }

    [Fact]
    public void Training_lowers_the_loss_and_an_interrupted_run_resumes_to_identical_weights()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = PatternedStream();
        var root = Directory.CreateTempSubdirectory("babel-pretrain-");
        try
        {
            using var uninterrupted = FreshModel();
            var losses = Pretrainer.Train(uninterrupted, stream, _options, Path.Combine(root.FullName, "a"), historyDirectory: root.FullName);
            Assert.Equal(_options.Steps, losses.Count);
            Assert.True(losses.TakeLast(3).Average() < losses.Take(3).Average() - 0.5, $"loss went from {losses[0]:F3} to {losses[^1]:F3}");

            var resumedDirectory = Path.Combine(root.FullName, "b");
            var resumedHistory = Path.Combine(root.FullName, "b-history");
            using (var interrupted = FreshModel())
            {
                using var cancellation = new CancellationTokenSource();
                var progress = new Inline(p => { if (p.Step == 7) cancellation.Cancel(); });
                Assert.Throws<OperationCanceledException>(() => Pretrainer.Train(interrupted, stream, _options, resumedDirectory, progress, cancellation.Token, historyDirectory: resumedHistory));
            }
            // Killed after step 7 with the checkpoint at step 5: the history runs two steps ahead until the run resumes.
            Assert.Equal([1, 2, 3, 4, 5, 6, 7], TrainingHistoryTests.ReadHistory(resumedHistory).Select(h => h.Step));
            using var resumed = FreshModel();
            var seen = new List<TrainingProgress>();
            var resumedLosses = Pretrainer.Train(resumed, stream, _options, resumedDirectory, new Inline(seen.Add), historyDirectory: resumedHistory);
            Assert.Equal(6, seen[0].Step);
            Assert.True(seen[0].Resumed);
            Assert.Equal(losses, resumedLosses);
            foreach (var directory in new[] { root.FullName, resumedHistory })
            {
                var history = TrainingHistoryTests.ReadHistory(directory);
                Assert.Equal(Enumerable.Range(1, _options.Steps), history.Select(h => h.Step));
                Assert.Equal(losses, history.Select(h => h.Loss));
                Assert.Equal(Enumerable.Range(0, _options.Steps).Select(_options.LearningRateAt), history.Select(h => h.LearningRate));
                Assert.All(history, h => Assert.True(h.TokensPerSecond > 0 && h.Validation is null, $"step {h.Step}"));
                TrainingHistoryTests.AssertPng(directory);
            }
            foreach (var (name, tensor) in uninterrupted.StateDict())
            {
                Assert.True(tensor.eq(resumed.StateDict()[name]).all().item<bool>(), $"{name} differs after resuming");
            }
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_checkpoint_of_other_options_is_refused_with_a_clear_message()
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = PatternedStream();
        var root = Directory.CreateTempSubdirectory("babel-pretrain-");
        try
        {
            using (var model = FreshModel()) Pretrainer.Train(model, stream, _options with { Steps = 5 }, root.FullName);
            using var other = FreshModel();
            var error = Assert.Throws<Storage.UserInputException>(() => Pretrainer.Train(other, stream, _options with { Steps = 5, LearningRate = 0.5 }, root.FullName));
            Assert.Contains("other options", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A checkpoint whose optimizer state lists other parameters (as one written before the fused q/k/v and gate/up
    /// projections does) or is cut short is refused in one sentence, never resumed with the wrong moments.
    /// </summary>
    [Theory]
    [InlineData("other parameters")]
    [InlineData("truncated")]
    public void An_optimizer_state_that_does_not_fit_the_model_is_refused_with_a_clear_message(string damage)
    {
        Modeling.Runtime.TorchRuntime.Initialize(1);
        var stream = PatternedStream();
        var root = Directory.CreateTempSubdirectory("babel-pretrain-");
        try
        {
            using (var model = FreshModel()) Pretrainer.Train(model, stream, _options with { Steps = 5 }, root.FullName);
            var path = Path.Combine(root.FullName, "optimizer.bin");
            if (damage == "truncated")
            {
                var bytes = File.ReadAllBytes(path);
                File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
            }
            else
            {
                // Three separate projections' worth of parameters where the model now has one fused parameter.
                var parameters = Enumerable.Range(0, 3).Select(_ => new TorchSharp.Modules.Parameter(TorchSharp.torch.randn(4, 4))).ToList();
                using var other = TorchSharp.torch.optim.AdamW(parameters, 0.01);
                foreach (var parameter in parameters) parameter.grad = TorchSharp.torch.ones(4, 4);
                other.step();
                other.save_state_dict(path);
            }
            using var resumed = FreshModel();
            var error = Assert.Throws<Storage.UserInputException>(() => Pretrainer.Train(resumed, stream, _options with { Steps = 5 }, root.FullName));
            Assert.Contains("optimizer.bin is not AdamW state for this model's parameters", error.Message, StringComparison.Ordinal);
            Assert.Contains("delete", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    private sealed class Inline(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
