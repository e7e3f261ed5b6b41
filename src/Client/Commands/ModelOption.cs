using System.CommandLine;
using Babel.Modeling.Checkpoints;

namespace Babel.Client.Commands;

/// <summary>
/// The <c>--model</c> option of every command that loads a model, and the one place its value becomes a folder: a local
/// folder, else a Hugging Face id <c>org/name[@revision]</c> found offline in the hub cache (<see cref="HuggingFaceCache"/>).
/// </summary>
internal static class ModelOption
{
    /// <summary>What every <c>--model</c> help text ends with.</summary>
    public const string HubHelp = " Or org/name[@revision], a model in the Hugging Face cache (HF_HOME, default ~/.cache/huggingface; never downloaded).";

    public static Option<string> Create(string description) => new("--model") { Description = description + HubHelp, Required = true };

    /// <summary>An optional <c>--model</c> (a command with a default model).</summary>
    public static Option<string?> CreateOptional(string description) => new("--model") { Description = description + HubHelp };

    /// <summary>The <c>--dtype</c> option of a command that loads a model for inference.</summary>
    public static Option<string> CreateDtype()
    {
        var option = new Option<string>("--dtype")
        {
            Description = "Element type of the weights and computation: auto (the stored type on CUDA; on CPU a bf16 checkpoint stays bf16 where the CPU has bf16 instructions, else float32), float32, bfloat16 (half the memory of float32) or float16.",
            DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong([.. ModelDtypes.Names]);
        return option;
    }

    /// <summary>
    /// The <c>--dtype</c> option of a job command: an explicit type (auto resolves per machine, and a job's results must not
    /// depend on which worker ran a shard); float32 by default, the type every result of earlier versions was computed in.
    /// </summary>
    public static Option<string> CreateJobDtype()
    {
        var option = new Option<string>("--dtype")
        {
            Description = "Element type the workers load the model and compute in: float32, bfloat16 (half the memory; faster on CPUs with bf16 instructions) or float16.",
            DefaultValueFactory = _ => "float32",
        };
        option.AcceptOnlyFromAmong([.. ModelDtypes.Names.Where(n => n != "auto")]);
        return option;
    }

    public static ModelDtype Dtype(ParseResult parse, Option<string> option) => ModelDtypes.Parse(parse.GetValue(option)!);

    /// <summary>The model folder the option names (a missing hub model is a <see cref="Storage.UserInputException"/> naming the path looked for).</summary>
    public static string Folder(ParseResult parse, Option<string> option) => HuggingFaceCache.ResolveModel(parse.GetValue(option)!);

    /// <summary>The model folder an optional option names; null when it is not given.</summary>
    public static string? OptionalFolder(ParseResult parse, Option<string?> option) => parse.GetValue(option) is { } value ? HuggingFaceCache.ResolveModel(value) : null;
}
