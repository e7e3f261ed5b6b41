using System.Text.Json;
using System.Text.Json.Nodes;
using Babel.Storage;

namespace Babel.Modeling.Chat;

/// <summary>Reading the small JSON files of a model folder, with one-sentence errors.</summary>
internal static class ConfigFiles
{
    public static JsonObject ReadObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true }) as JsonObject
                ?? throw new UserInputException($"{path} is not a JSON object; replace it with an intact copy.");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path} is not valid JSON ({e.Message}); replace it with an intact copy.", e);
        }
        catch (IOException e)
        {
            throw new UserInputException($"{path} could not be read ({e.Message}); check the file and its permissions.", e);
        }
    }
}
