using Babel.Storage;
using static TorchSharp.torch;

namespace Babel.Modeling.Checkpoints;

/// <summary>The element type a model is loaded and computed in (<c>--dtype</c>).</summary>
public enum ModelDtype
{
    /// <summary>The stored type on CUDA; on CPU the type measured faster there (<see cref="ModelDtypes.Resolve"/>).</summary>
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

    /// <summary>
    /// The element type to load a checkpoint whose weights are stored as <paramref name="stored"/> in. An explicit type is
    /// used as asked. <see cref="ModelDtype.Auto"/> keeps a bfloat16 or float16 checkpoint as stored on CUDA; on CPU it
    /// computes in float32, which decodes faster than bfloat16 and float16 with libtorch's CPU kernels (measured in
    /// <c>docs/benchmarks.md</c>, "Dtypes") at twice the memory; float64 checkpoints load as float32.
    /// </summary>
    public static ScalarType Resolve(ModelDtype requested, SafeTensorsDtype stored, bool cuda = false) => requested switch
    {
        ModelDtype.Float32 => ScalarType.Float32,
        ModelDtype.BFloat16 => ScalarType.BFloat16,
        ModelDtype.Float16 => ScalarType.Float16,
        _ when cuda && stored == SafeTensorsDtype.BF16 => ScalarType.BFloat16,
        _ when cuda && stored == SafeTensorsDtype.F16 => ScalarType.Float16,
        _ => ScalarType.Float32,
    };
}
