using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Babel.Modeling.Checkpoints;
using Babel.Storage;

namespace Babel.Modeling.Training;

/// <summary>Where a trained model folder records how it was made; written last, its presence marks a finished folder.</summary>
public static class TrainingManifest
{
    public const string FileName = "training.json";

    /// <summary>The resumable checkpoint's folder inside a model folder being trained; removed once the model is complete.</summary>
    public const string CheckpointFolderName = "checkpoint";

    private static readonly JsonSerializerOptions _indented = new() { WriteIndented = true };

    /// <summary>True when <paramref name="modelDirectory"/> holds a finished training run.</summary>
    public static bool IsComplete(string modelDirectory) => File.Exists(Path.Combine(modelDirectory, FileName));

    /// <summary>Writes <paramref name="manifest"/> as <c>training.json</c>, atomically.</summary>
    public static void Save<T>(string modelDirectory, T manifest) =>
        AtomicFile.WriteAllText(Path.Combine(modelDirectory, FileName), JsonSerializer.Serialize(manifest, _indented) + "\n");

    /// <summary>The mean training loss of the last 20 steps: the run's final loss, less noisy than the last step alone.</summary>
    public static double FinalLoss(IReadOnlyList<double> losses) => losses.Skip(Math.Max(0, losses.Count - 20)).DefaultIfEmpty(double.NaN).Average();
}

/// <summary><c>training.json</c> of <c>babel pretrain</c>: the model, its seed and options, the data, and the held-out scores.</summary>
public sealed record PretrainingManifest(
    [property: JsonPropertyName("preset")] string Preset,
    [property: JsonPropertyName("config"), JsonConverter(typeof(HuggingFaceConfigConverter))] ModelConfig Config,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("options")] PretrainingOptions Options,
    [property: JsonPropertyName("data")] PretrainingData Data,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("finalTrainLoss")] double FinalTrainLoss,
    [property: JsonPropertyName("heldout")] IReadOnlyDictionary<string, HeldoutScore> Heldout)
{
    /// <summary>"final train loss 2.345; held-out mean NLL 2.678".</summary>
    public string Summary() => string.Create(CultureInfo.InvariantCulture,
        $"final train loss {FinalTrainLoss:F3}; held-out mean NLL {Heldout.Values.Average(h => h.MeanNll):F3}");
}

/// <summary>The pretraining data: the corpus folder and name, its languages, training tokens and held-out documents.</summary>
public sealed record PretrainingData(
    [property: JsonPropertyName("corpus")] string Corpus,
    [property: JsonPropertyName("corpusName")] string CorpusName,
    [property: JsonPropertyName("languages")] IReadOnlyList<string> Languages,
    [property: JsonPropertyName("trainTokens")] long TrainTokens,
    [property: JsonPropertyName("heldoutIds")] IReadOnlyList<string> HeldoutIds);

/// <summary>A language's held-out score after pretraining.</summary>
public sealed record HeldoutScore(
    [property: JsonPropertyName("tokens")] long Tokens,
    [property: JsonPropertyName("meanNll")] double MeanNll,
    [property: JsonPropertyName("perplexity")] double Perplexity,
    [property: JsonPropertyName("bitsPerByte")] double BitsPerByte)
{
    public static HeldoutScore Of(PerplexityResult result) => new(result.Tokens, result.MeanNll, result.Perplexity, result.BitsPerByte);
}

/// <summary><c>training.json</c> of <c>babel finetune</c>: the base model, seed and options, the instructions, and the response loss before and after.</summary>
public sealed record InstructionTuningManifest(
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("baseModel")] string BaseModel,
    [property: JsonPropertyName("config"), JsonConverter(typeof(HuggingFaceConfigConverter))] ModelConfig Config,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("options")] PretrainingOptions Options,
    [property: JsonPropertyName("data")] InstructionData Data,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("finalTrainLoss")] double FinalTrainLoss,
    [property: JsonPropertyName("responseLoss")] ResponseLossComparison ResponseLoss)
{
    public const string KindName = "instruction-tuning";

    /// <summary>"response loss on 64 instructions: 3.210 before, 1.234 after".</summary>
    public string Summary() => string.Create(CultureInfo.InvariantCulture,
        $"response loss on {ResponseLoss.Examples} instructions: {ResponseLoss.Before:F3} before, {ResponseLoss.After:F3} after");
}

/// <summary>The instructions file, its hash, and how many of its examples fitted the sequence length.</summary>
public sealed record InstructionData(
    [property: JsonPropertyName("instructions")] string Instructions,
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("used")] int Used,
    [property: JsonPropertyName("leftOutTooLong")] int LeftOutTooLong,
    [property: JsonPropertyName("format")] string Format);

/// <summary>Mean loss per response token on the first usable instructions, before and after tuning.</summary>
public sealed record ResponseLossComparison(
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("what")] string What,
    [property: JsonPropertyName("before")] double Before,
    [property: JsonPropertyName("after")] double After);

/// <summary>A <see cref="ModelConfig"/> as the Hugging Face <c>config.json</c> object, the form model folders use.</summary>
public sealed class HuggingFaceConfigConverter : JsonConverter<ModelConfig>
{
    public override ModelConfig Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        ModelConfig.FromJson(JsonNode.Parse(ref reader) as JsonObject ?? throw new JsonException("a model config must be a JSON object."), TrainingManifest.FileName);

    public override void Write(Utf8JsonWriter writer, ModelConfig value, JsonSerializerOptions options) => value.ToJson().WriteTo(writer, options);
}
