using Babel.Grains.Engine;
using System.Net;
using Microsoft.Extensions.Options;

namespace Babel.Silo;

/// <summary>Checks <see cref="BabelClusterOptions"/> and, in cluster mode, that a storage connection string is configured.</summary>
internal sealed class BabelClusterOptionsValidator(IConfiguration configuration) : IValidateOptions<BabelClusterOptions>
{
    public ValidateOptionsResult Validate(string? name, BabelClusterOptions options)
    {
        var failures = new List<string>();
        CheckPort(failures, "SiloPort", options.SiloPort);
        CheckPort(failures, "GatewayPort", options.GatewayPort);
        if (options.SiloPort == options.GatewayPort)
            failures.Add($"Babel:Cluster:SiloPort and Babel:Cluster:GatewayPort are both {options.SiloPort}; give them different ports.");
        if (string.IsNullOrWhiteSpace(options.ClusterId))
            failures.Add("Babel:Cluster:ClusterId is empty; set it to the cluster's name, e.g. babel.");
        if (string.IsNullOrWhiteSpace(options.ServiceId))
            failures.Add("Babel:Cluster:ServiceId is empty; set it to a stable name, e.g. babel.");
        IPAddress? advertised = null;
        if (options.AdvertisedAddress is { } address && !IPAddress.TryParse(address, out advertised))
            failures.Add($"Babel:Cluster:AdvertisedAddress '{address}' is not an IP address; set an IP such as 10.0.0.5 or leave it unset.");
        if (!IPAddress.TryParse(options.ListenAddress, out var listen))
            failures.Add($"Babel:Cluster:ListenAddress '{options.ListenAddress}' is not an IP address; set 127.0.0.1 (this machine only), " +
                "this machine's IP (one interface) or 0.0.0.0 (every interface).");
        else if (advertised is not null && !SiloEndpoints.IsEveryInterface(listen) && !listen.Equals(advertised))
            failures.Add($"Babel:Cluster:AdvertisedAddress {advertised} is not the address the silo listens on (Babel:Cluster:ListenAddress {listen}), " +
                $"so no other silo or client could reach it; set Babel:Cluster:ListenAddress to {advertised}, or to 0.0.0.0 to listen on every interface.");
        if (options.ProbeTimeout is { } probe && probe <= TimeSpan.Zero)
            failures.Add($"Babel:Cluster:ProbeTimeout {probe} is not positive; set a duration such as 00:00:10 or leave it unset.");
        if (options.NumMissedProbesLimit is { } missed && missed < 1)
            failures.Add($"Babel:Cluster:NumMissedProbesLimit {missed} is below 1; set 1 or more or leave it unset.");

        if (options.KubernetesHosting == true)
        {
            if (options.Mode != ClusterMode.Cluster)
                failures.Add("Babel:Cluster:KubernetesHosting is true in embedded mode; set Babel:Cluster:Mode to Cluster or leave KubernetesHosting unset.");
            foreach (var variable in KubernetesHosting.PodVariables.Where(v => string.IsNullOrWhiteSpace(configuration[v])))
                failures.Add($"Babel:Cluster:KubernetesHosting is true but {variable} is not set; set it from the downward API as deploy/k8s/base/deployment.yaml does.");
        }

        switch (options.Mode)
        {
            case ClusterMode.Embedded:
                if (string.IsNullOrWhiteSpace(options.StateFolder))
                    failures.Add("Babel:Cluster:StateFolder is empty; set a folder for grain state, e.g. ./.babel/state.");
                if (string.IsNullOrWhiteSpace(options.ArtifactFolder))
                    failures.Add("Babel:Cluster:ArtifactFolder is empty; set a folder for artifacts, e.g. ./.babel/artifacts.");
                break;
            case ClusterMode.Cluster:
                CheckStorage(failures, configuration);
                if (!IsContainerName(options.ArtifactContainer))
                    failures.Add($"Babel:Cluster:ArtifactContainer '{options.ArtifactContainer}' is not a blob container name; " +
                        "use 3-63 lowercase letters, digits and single hyphens, e.g. babel-artifacts.");
                if (!IsContainerName(options.JournalContainer))
                    failures.Add($"Babel:Cluster:JournalContainer '{options.JournalContainer}' is not a blob container name; " +
                        "use 3-63 lowercase letters, digits and single hyphens, e.g. babel-jobs.");
                break;
            default:
                failures.Add($"Babel:Cluster:Mode '{options.Mode}' is unknown; set Embedded or Cluster.");
                break;
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void CheckStorage(List<string> failures, IConfiguration configuration)
    {
        StorageService[] services = [StorageService.Table, StorageService.Blob];
        var missing = services.Where(s => StorageConnectionString.From(configuration, s) is null).ToList();
        if (missing.Count == services.Length)
            failures.Add($"Cluster mode needs Azure Storage; set the environment variable {StorageConnectionString.Key} " +
                $"(or ConnectionStrings__{StorageConnectionString.ConnectionStringName}) to its connection string.");
        foreach (var service in missing.Count == services.Length ? [] : missing)
            failures.Add($"Cluster mode needs Azure {service} storage too; set {StorageConnectionString.KeyOf(service)} or {StorageConnectionString.Key} to its connection string.");

        // One message per faulty setting: the shared connection string serves both services.
        var malformed = services
            .Select(s => (Service: s, Connection: StorageConnectionString.From(configuration, s)))
            .Where(c => c.Connection is { } connection && !connection.IsWellFormed(c.Service))
            .DistinctBy(c => c.Connection!.Source);
        foreach (var (service, connection) in malformed)
        {
            failures.Add(connection!.Source == StorageConnectionString.KeyOf(service)
                ? $"{connection.Source} is not an Azure {service} storage connection string; set it to one such as " +
                    $"{service}Endpoint=https://ACCOUNT.{service.ToString().ToLowerInvariant()}.core.windows.net/;SharedAccessSignature=... (see deploy/k8s/README.md)."
                : $"{connection.Source} is not an Azure Storage connection string; set it to one such as " +
                    "UseDevelopmentStorage=true or the storage account's connection string from the Azure portal.");
        }
    }

    private static void CheckPort(List<string> failures, string key, int port)
    {
        if (port is < 1 or > 65535)
            failures.Add($"Babel:Cluster:{key} {port} is not a TCP port; set a number from 1 to 65535.");
    }

    // Azure's rule: 3-63 characters, lowercase letters, digits and hyphens, starting with a letter or digit, no "--".
    private static bool IsContainerName(string name) =>
        name.Length is >= 3 and <= 63
        && name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-')
        && name[0] != '-' && name[^1] != '-'
        && !name.Contains("--", StringComparison.Ordinal);
}

internal sealed class WorkerOptionsValidator : IValidateOptions<WorkerOptions>
{
    public ValidateOptionsResult Validate(string? name, WorkerOptions options)
    {
        var failures = new List<string>();
        if (options.CpuSlots < 0)
            failures.Add($"Babel:Worker:CpuSlots {options.CpuSlots} is negative; set 0 (no CPU workers) or more.");
        if (options.ThreadsPerSlot < 1)
            failures.Add($"Babel:Worker:ThreadsPerSlot {options.ThreadsPerSlot} is below 1; set 1 or more.");
        if (!string.IsNullOrWhiteSpace(options.Devices))
        {
            foreach (var device in ComputeDevices.Split(options.Devices))
            {
                if (!ComputeDevices.IsDeviceName(device))
                    failures.Add($"Babel:Worker:Devices has '{device}', which is not a device; list devices like cuda:0,cuda:1 or cpu:0,cpu:1.");
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

internal sealed class HttpOptionsValidator : IValidateOptions<HttpOptions>
{
    public ValidateOptionsResult Validate(string? name, HttpOptions options)
    {
        var urls = options.Urls?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
        if (urls.Length == 0)
            return ValidateOptionsResult.Fail("Babel:Http:Urls is empty; set a listen URL such as http://127.0.0.1:8080.");
        var failures = urls
            .Where(url => !IsListenUrl(url))
            .Select(url => $"Babel:Http:Urls has '{url}', which is not an http(s) URL; set one such as http://127.0.0.1:8080.")
            .ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    // Kestrel accepts hosts Uri rejects (http://*:8080, http://+:8080), so check only the scheme and that a host follows.
    private static bool IsListenUrl(string url)
    {
        var rest = url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? url["http://".Length..]
            : url.StartsWith("https://", StringComparison.OrdinalIgnoreCase) ? url["https://".Length..]
            : null;
        return !string.IsNullOrEmpty(rest) && !rest.StartsWith('/');
    }
}

/// <summary>Checks <see cref="BabelTlsOptions"/>: when TLS is on, that the certificate loads with its key and is usable; when off, that no certificate is set in vain.</summary>
internal sealed class BabelTlsOptionsValidator(IConfiguration configuration) : IValidateOptions<BabelTlsOptions>
{
    public ValidateOptionsResult Validate(string? name, BabelTlsOptions options)
    {
        if (!options.Enabled)
        {
            (string Key, string? Value)[] files = [("CertificatePath", options.CertificatePath), ("KeyPath", options.KeyPath), ("CertificateAuthorityPath", options.CertificateAuthorityPath)];
            return files.FirstOrDefault(f => !string.IsNullOrWhiteSpace(f.Value)) is { Key: { } set }
                ? ValidateOptionsResult.Fail($"Babel:Tls:{set} is set but Babel:Tls:Enabled is not true, so connections would stay plaintext; " +
                    "set Babel:Tls:Enabled to true, or remove the certificate settings.")
                : ValidateOptionsResult.Success;
        }
        try
        {
            using var certificates = ClusterTls.Load(options, configuration);
            return ValidateOptionsResult.Success;
        }
        catch (OptionsValidationException e)
        {
            return ValidateOptionsResult.Fail(e.Failures);
        }
    }
}
