using Babel.Client;

return BabelCli.Run(args);
