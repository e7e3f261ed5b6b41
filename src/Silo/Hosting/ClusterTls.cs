using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Babel.Storage;
using Microsoft.Extensions.Options;
using Orleans.Connections.Security;

namespace Babel.Silo;

/// <summary>
/// TLS between silos and from clients (<see cref="BabelTlsOptions"/>), configured the same way on both sides: each end
/// presents the certificate and requires the peer's, which must be the very same certificate or, with
/// <see cref="BabelTlsOptions.CertificateAuthorityPath"/>, chain to that authority. A plaintext peer, or one with another
/// certificate, fails the handshake and is disconnected.
/// </summary>
public static class ClusterTls
{
    private const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// Turns on TLS for this cluster client when <c>Babel:Tls:Enabled</c> is true in <paramref name="configuration"/>, with
    /// the silos' settings; bad settings are a <see cref="UserInputException"/> of one sentence per problem.
    /// </summary>
    public static IClientBuilder UseBabelTls(this IClientBuilder client, IConfiguration configuration)
    {
        BabelTlsOptions options;
        try
        {
            options = BoundOptions.Bind(configuration, BabelTlsOptions.Section, new BabelTlsOptionsValidator(configuration));
        }
        catch (OptionsValidationException e)
        {
            throw new UserInputException(string.Join(" ", e.Failures), e);
        }
        if (!options.Enabled)
            return client;
        var certificates = Load(options, configuration);
        return client.UseTls(certificates.Certificate, tls => Configure(tls, certificates));
    }

    /// <summary>Turns on TLS for the silo's silo-to-silo connections (both ways) and its gateway.</summary>
    internal static ISiloBuilder UseBabelTls(this ISiloBuilder silo, BabelTlsOptions options, IConfiguration configuration)
    {
        var certificates = Load(options, configuration);
        return silo.UseTls(certificates.Certificate, tls => Configure(tls, certificates));
    }

    private static void Configure(TlsOptions tls, ClusterCertificates certificates)
    {
        // Mutual TLS: a silo requires the connecting side's certificate too, so only holders of the key join or call.
        tls.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.RemoteCertificateValidation = certificates.Accepts;
    }

    /// <summary>The certificate (with its key) and the trusted authorities of <paramref name="options"/>; a bad file is an <see cref="OptionsValidationException"/> of one sentence.</summary>
    internal static ClusterCertificates Load(BabelTlsOptions options, IConfiguration configuration)
    {
        var path = options.CertificatePath;
        if (string.IsNullOrWhiteSpace(path))
            throw Invalid("Babel:Tls:Enabled is true but Babel:Tls:CertificatePath is not set; set it to the certificate file (PFX, or PEM such as a Kubernetes TLS Secret's tls.crt).");
        RequireFile("CertificatePath", path);
        if (options.KeyPath is { Length: > 0 } keyPath)
            RequireFile("KeyPath", keyPath);
        var password = configuration[BabelTlsOptions.PasswordKey] is { Length: > 0 } configured ? configured : null;

        X509Certificate2 certificate;
        try
        {
            certificate = IsPem(path)
                ? password is null
                    ? X509Certificate2.CreateFromPemFile(path, NullIfEmpty(options.KeyPath))
                    : X509Certificate2.CreateFromEncryptedPemFile(path, password, NullIfEmpty(options.KeyPath))
                : X509CertificateLoader.LoadPkcs12FromFile(path, password);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Invalid($"Babel:Tls:CertificatePath '{path}' or its key could not be opened ({e.Message}); check that the silo's user may read them " +
                "(deploy/k8s mounts the TLS Secret readable by the pod's group).");
        }
        catch (CryptographicException)
        {
            // The cryptography error is not shown: the sentence says what to check.
            throw Invalid($"Babel:Tls:CertificatePath '{path}' could not be read as a PFX or PEM certificate with its key; check the file, " +
                $"Babel:Tls:KeyPath and the password in {BabelTlsOptions.PasswordKey}.");
        }

        try
        {
            Check(certificate, path);
            var certificates = new ClusterCertificates(certificate, LoadAuthorities(options.CertificateAuthorityPath));
            // Peers judge this certificate by the same rule, so one the authority did not issue could never connect.
            if (!certificates.Accepts(certificate, null, SslPolicyErrors.None))
                throw Invalid($"The certificate in Babel:Tls:CertificatePath '{path}' is not issued by the authority in Babel:Tls:CertificateAuthorityPath " +
                    $"'{options.CertificateAuthorityPath}'; use a certificate that authority issued, or the authority that issued it.");
            return certificates;
        }
        catch
        {
            certificate.Dispose();
            throw;
        }
    }

    private static void Check(X509Certificate2 certificate, string path)
    {
        if (!certificate.HasPrivateKey)
            throw Invalid($"Babel:Tls:CertificatePath '{path}' has no private key; put the key in the same file or set Babel:Tls:KeyPath to its PEM file.");
        var now = DateTime.Now;
        if (now > certificate.NotAfter)
            throw Invalid($"The certificate in Babel:Tls:CertificatePath '{path}' expired on {certificate.NotAfter.ToUniversalTime():u}; renew it.");
        if (now < certificate.NotBefore)
            throw Invalid($"The certificate in Babel:Tls:CertificatePath '{path}' is not valid before {certificate.NotBefore.ToUniversalTime():u}; check the clock or reissue it.");
        if (certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is { } usage)
        {
            var usages = usage.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).ToHashSet();
            if (!usages.Contains(ServerAuthentication) || !usages.Contains(ClientAuthentication))
                throw Invalid($"The certificate in Babel:Tls:CertificatePath '{path}' is not allowed for both server and client authentication, " +
                    "which every silo does; reissue it with both extended key usages (serverAuth and clientAuth) or none.");
        }
    }

    private static X509Certificate2Collection? LoadAuthorities(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            return null;
        RequireFile("CertificateAuthorityPath", path);
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(path);
        }
        catch (CryptographicException)
        {
            throw Invalid($"Babel:Tls:CertificateAuthorityPath '{path}' is not a PEM file of certificates; point it at the authority's certificate (e.g. ca.crt).");
        }
        if (authorities.Count == 0)
            throw Invalid($"Babel:Tls:CertificateAuthorityPath '{path}' holds no certificate; point it at the authority's PEM certificate (e.g. ca.crt).");
        return authorities;
    }

    private static void RequireFile(string setting, string path)
    {
        if (!File.Exists(path))
            throw Invalid($"Babel:Tls:{setting} '{path}' does not exist; mount the file there or correct the path.");
    }

    // A PEM file is text that starts its first block with -----BEGIN; a PKCS#12 file is binary DER.
    private static bool IsPem(string path)
    {
        using var reader = new StreamReader(path);
        var start = new char[4096];
        var read = reader.ReadBlock(start, 0, start.Length);
        return new string(start, 0, read).Contains("-----BEGIN ", StringComparison.Ordinal);
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private static OptionsValidationException Invalid(string message) => new(Options.DefaultName, typeof(BabelTlsOptions), [message]);
}

/// <summary>This node's certificate and the authorities it trusts (null: trust only a peer with this very certificate).</summary>
internal sealed record ClusterCertificates(X509Certificate2 Certificate, X509Certificate2Collection? Authorities) : IDisposable
{
    /// <summary>
    /// Whether a peer may connect. Host names are not compared (silos and gateways are dialled by IP) and the system's
    /// roots are not consulted: trust is the shared certificate, or a chain to <see cref="Authorities"/> only.
    /// </summary>
    public bool Accepts(X509Certificate2 peer, X509Chain? chain, SslPolicyErrors errors)
    {
        if (Authorities is null)
        {
            var now = DateTime.Now;
            return peer.RawData.AsSpan().SequenceEqual(Certificate.RawData) && peer.NotBefore <= now && now <= peer.NotAfter;
        }
        using var verify = new X509Chain();
        verify.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        verify.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        verify.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        // Intermediates the peer sent.
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements)
                verify.ChainPolicy.ExtraStore.Add(element.Certificate);
        }
        return verify.Build(peer);
    }

    public void Dispose()
    {
        Certificate.Dispose();
        foreach (var authority in Authorities ?? [])
            authority.Dispose();
    }
}
