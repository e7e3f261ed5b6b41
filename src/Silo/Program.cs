using Babel.Silo;

return await SiloProcess.RunAsync(args);
