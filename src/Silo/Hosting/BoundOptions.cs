using Microsoft.Extensions.Options;

namespace Babel.Silo;

/// <summary>
/// Options a host needs while it is being built (which clustering to register, which URLs to bind): bound and validated
/// right away, with the same validator that <c>ValidateOnStart</c> runs again, so a bad value fails before anything starts.
/// </summary>
internal static class BoundOptions
{
    public static T Bind<T>(IConfiguration configuration, string section, IValidateOptions<T> validator, Action<T>? configure = null)
        where T : class, new()
    {
        var options = new T();
        var values = configuration.GetSection(section);
        foreach (var property in typeof(T).GetProperties().Where(p => p.PropertyType.IsEnum))
        {
            var value = values[property.Name];
            if (!string.IsNullOrWhiteSpace(value) && !Enum.TryParse(property.PropertyType, value, ignoreCase: true, out _))
                throw new OptionsValidationException(Options.DefaultName, typeof(T),
                    [$"{section}:{property.Name} '{value}' is unknown; set one of {string.Join(", ", Enum.GetNames(property.PropertyType))}."]);
        }
        try
        {
            values.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            // The binder's message names the key and the bad value, e.g. "Failed to convert configuration value 'Clustr' at 'Babel:Cluster:Mode' to type …".
            throw new OptionsValidationException(Options.DefaultName, typeof(T), [$"{e.Message.TrimEnd('.')}; correct that setting under {section}."]);
        }
        configure?.Invoke(options);
        var result = validator.Validate(Options.DefaultName, options);
        if (result.Failed)
            throw new OptionsValidationException(Options.DefaultName, typeof(T), result.Failures);
        return options;
    }

    /// <summary>Registers <typeparamref name="T"/> bound from <paramref name="section"/>, checked by <typeparamref name="TValidator"/> at start.</summary>
    public static OptionsBuilder<T> AddValidated<T, TValidator>(IServiceCollection services, string section)
        where T : class
        where TValidator : class, IValidateOptions<T>
    {
        services.AddSingleton<IValidateOptions<T>, TValidator>();
        return services.AddOptions<T>().BindConfiguration(section).ValidateOnStart();
    }
}
