using Babel.Modeling.Experts;
using Xunit;
using static TorchSharp.torch;

namespace Babel.UnitTests.Experts;

/// <summary>
/// Counting on a contiguous partition, on the host (<see cref="ContiguousExpertCounts"/>) and on the device path other
/// devices take, against plain loops over the same activations: expert widths with whole vectors and tails, float32 and
/// bfloat16, the gate read as a strided view of fused gate/up rows, exact zeros in the gate (not positive), and tokens left
/// out by the mask.
/// </summary>
public class ContiguousExpertCountsTests
{
    public static TheoryData<string, int, int, string, bool> Cases
    {
        get
        {
            var cases = new TheoryData<string, int, int, string, bool>();
            foreach (var dtype in new[] { "float32", "bfloat16" })
            {
                foreach (var host in new[] { true, false })
                {
                    cases.Add("topk:2", 8, 40, dtype, host);
                    cases.Add("topk:3", 5, 70, dtype, host);
                    cases.Add("threshold:0.5", 8, 40, dtype, host);
                    cases.Add("threshold:0.3", 5, 70, dtype, host);
                    cases.Add("threshold:1", 4, 7, dtype, host);
                }
            }
            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Counts_match_plain_loops_over_the_activations(string ruleText, int experts, int size, string dtype, bool countOnHost)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var type = dtype == "float32" ? ScalarType.Float32 : ScalarType.BFloat16;
        const int Batch = 4, Length = 50;
        var neurons = experts * size;
        var generator = new TorchSharp.torch.Generator(7);
        var gateUp = randn([Batch, Length, 2 * neurons], generator: generator).to(type);
        // Exact zeros (and a negative zero) in the gate: not positive under the threshold rule.
        gateUp.view(-1)[TensorIndex.Slice(0, null, 13)] = tensor(0f).to(type);
        gateUp[0, 0, 1] = tensor(-0f).to(type);
        var gate = gateUp.narrow(-1, 0, neurons);
        var intermediate = nn.functional.silu(gate).mul(gateUp.narrow(-1, neurons, neurons));
        Assert.False(gate.is_contiguous());
        var mask = rand([Batch, Length], generator: generator).gt(0.2);

        var rule = ActivationRule.Parse(ruleText);
        var partition = ExpertPartition.Contiguous(1, neurons, experts);
        using var counter = new ActivationCounter(partition, rule, CPU, countOnHost);
        counter.SetTokenMask(mask);
        var returned = counter.OnIntermediate(0, gate, intermediate);
        Assert.Same(intermediate, returned);

        var expected = PlainCount(gate, intermediate, mask, rule, experts, size);
        var actual = counter.Counts()[0];
        Assert.Equal(expected, actual);
        var tokens = mask.sum().item<long>();
        Assert.Equal(tokens, counter.Tokens);
        Assert.Contains(actual, c => c > 0 && c < tokens);
    }

    private static long[] PlainCount(Tensor gate, Tensor intermediate, Tensor mask, ActivationRule rule, int experts, int size)
    {
        var neurons = experts * size;
        var g = gate.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        var a = intermediate.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        var include = mask.contiguous().data<bool>().ToArray();
        var counts = new long[experts];
        for (var token = 0; token < include.Length; token++)
        {
            if (!include[token]) continue;
            var l1 = new double[experts];
            var positive = new int[experts];
            for (var neuron = 0; neuron < neurons; neuron++)
            {
                l1[neuron / size] += Math.Abs(a[token * neurons + neuron]);
                if (g[token * neurons + neuron] > 0) positive[neuron / size]++;
            }
            switch (rule)
            {
                case ActivationRule.TopK topK:
                    foreach (var expert in Enumerable.Range(0, experts).OrderByDescending(e => l1[e]).Take(topK.K)) counts[expert]++;
                    break;
                case ActivationRule.Threshold threshold:
                    for (var expert = 0; expert < experts; expert++)
                    {
                        if ((double)positive[expert] / size >= threshold.Fraction - 1e-12) counts[expert]++;
                    }
                    break;
            }
        }
        return counts;
    }
}
