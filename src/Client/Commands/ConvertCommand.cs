using System.CommandLine;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Runtime;
using Babel.Storage;

namespace Babel.Client.Commands;

/// <summary><c>babel convert --from llama2c IN.bin --out DIR</c>: imports a foreign checkpoint as a Hugging Face model folder.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from")
        {
            Description = $"Format of the input checkpoint ({Llama2cCheckpoint.FormatName}).",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "Folder to write config.json and model.safetensors into.",
            Required = true,
        };
        var input = new Argument<string>("input") { Description = "The checkpoint file to convert." };
        var command = new Command("convert", "Convert a checkpoint into a Hugging Face model folder.") { from, output, input };
        command.SetAction(parseResult =>
        {
            var format = parseResult.GetRequiredValue(from);
            if (format != Llama2cCheckpoint.FormatName)
            {
                throw new UserInputException($"--from '{format}' is not a checkpoint format babel converts; use --from {Llama2cCheckpoint.FormatName}.");
            }
            var outputDirectory = parseResult.GetRequiredValue(output);
            TorchRuntime.Initialize();
            var config = Llama2cCheckpoint.Convert(parseResult.GetRequiredValue(input), outputDirectory);
            parseResult.InvocationConfiguration.Output.WriteLine(
                $"Wrote {outputDirectory}: {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, vocab {config.VocabSize}, " +
                $"tied embeddings {(config.TieWordEmbeddings ? "yes" : "no")}.");
            return 0;
        });
        return command;
    }
}
