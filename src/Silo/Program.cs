using Babel.Silo;

try
{
    var builder = WebApplication.CreateBuilder(args);
    builder.AddBabelHttp();
    builder.AddBabelSilo();
    builder.AddBabelTelemetry();

    await using var app = builder.Build();
    app.MapBabelEndpoints();
    await app.RunAsync();
    return 0;
}
catch (Exception e) when (StartupFailure.Describe(e) is { } message)
{
    await Console.Error.WriteLineAsync(message);
    return StartupFailure.ExitCode;
}
