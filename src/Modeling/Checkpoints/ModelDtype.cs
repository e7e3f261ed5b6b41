using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>The element type a model is loaded and computed in (<c>--dtype</c>).</summary>
public enum ModelDtype
{
    /// <summary>The stored type on CUDA; on CPU the type measured faster there (<see cref="ModelDtypes.Resolve"/>): bfloat16 kept where the CPU has bfloat16 instructions, else float32.</summary>
    Auto,
    Float32,
    BFloat16,
    Float16,
}

/// <summary>Parsing and resolving <see cref="ModelDtype"/>.</summary>
public static class ModelDtypes
{
    /// <summary>The names <c>--dtype</c> accepts.</summary>
    public static readonly IReadOnlyList<string> Names = ["auto", "float32", "bfloat16", "float16"];

    /// <exception cref="UserInputException">Not one of <see cref="Names"/>.</exception>
    public static ModelDtype Parse(string name) => name switch
    {
        "auto" => ModelDtype.Auto,
        "float32" => ModelDtype.Float32,
        "bfloat16" => ModelDtype.BFloat16,
        "float16" => ModelDtype.Float16,
        _ => throw new UserInputException($"--dtype '{name}' is not known; use {string.Join(", ", Names)}."),
    };

    /// <summary>The name <c>--dtype</c> gives <paramref name="dtype"/>.</summary>
    public static string Name(ModelDtype dtype) => Names[(int)dtype];

    /// <summary>
    /// The element type of a job's model: an explicit one, never <see cref="ModelDtype.Auto"/>, which resolves per machine,
    /// while a job's results must not depend on which worker ran a shard.
    /// </summary>
    /// <exception cref="UserInputException">Not an explicit type of <see cref="Names"/>.</exception>
    public static ModelDtype ParseForJob(string name) => Parse(name) is var dtype && dtype != ModelDtype.Auto
        ? dtype
        : throw new UserInputException("--dtype auto is not accepted by a job: it resolves per machine, and a job's results must not depend on which worker ran a shard; use float32, bfloat16 or float16.");

    /// <summary>
    /// The element type to load a checkpoint whose weights are stored as <paramref name="stored"/> in. An explicit type is
    /// used as asked. <see cref="ModelDtype.Auto"/> keeps a bfloat16 or float16 checkpoint as stored on CUDA. On CPU it
    /// keeps bfloat16 when the CPU has bfloat16 instructions (AVX-512 BF16 or AMX), where libtorch runs it faster than
    /// float32 (measured: 1.5–2.6× the batched forward, 1.25–1.85× batch-1 decoding; <c>docs/benchmarks.md</c>, "Dtypes"), and
    /// computes in float32 otherwise; float16 computes in float32 on CPU (libtorch's CPU float16 ran at a third of float32
    /// or less); float64 checkpoints load as float32.
    /// </summary>
    /// <param name="requested">What <c>--dtype</c> asked for.</param>
    /// <param name="stored">The checkpoint's stored type (<see cref="CheckpointWeights.StoredDtype"/>).</param>
    /// <param name="cuda">Whether the model runs on CUDA.</param>
    /// <param name="cpuBf16">Whether the CPU has bfloat16 instructions; read from <c>/proc/cpuinfo</c> when not given.</param>
    public static ScalarType Resolve(ModelDtype requested, SafeTensorsDtype stored, bool cuda = false, bool? cpuBf16 = null) => requested switch
    {
        ModelDtype.Float32 => ScalarType.Float32,
        ModelDtype.BFloat16 => ScalarType.BFloat16,
        ModelDtype.Float16 => ScalarType.Float16,
        _ when stored == SafeTensorsDtype.BF16 && (cuda || (cpuBf16 ?? CpuHasBf16.Value)) => ScalarType.BFloat16,
        _ when cuda && stored == SafeTensorsDtype.F16 => ScalarType.Float16,
        _ => ScalarType.Float32,
    };

    private static readonly Lazy<bool> CpuHasBf16 = new(() =>
    {
        const string CpuInfo = "/proc/cpuinfo";
        if (!File.Exists(CpuInfo)) return false;
        var flags = File.ReadLines(CpuInfo).FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "";
        return flags.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries).Any(f => f is "avx512_bf16" or "amx_bf16");
    });
}
