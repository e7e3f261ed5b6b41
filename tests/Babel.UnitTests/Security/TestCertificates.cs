using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Babel.Tests.Security;

/// <summary>
/// Certificates made in the test (no file in the repository, nothing from a store): self-signed ones, an authority and the
/// certificates it issues, written as a Kubernetes TLS Secret mounts them (PEM <c>tls.crt</c> + <c>tls.key</c>) or as a PFX.
/// </summary>
internal static class TestCertificates
{
    private const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    /// <summary>A self-signed certificate for <paramref name="usages"/> (default: server and client authentication), valid from an hour ago for <paramref name="lifetime"/> (default a day).</summary>
    public static X509Certificate2 SelfSigned(string name, string[]? usages = null, TimeSpan? lifetime = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = Request(name, key, usages ?? [ServerAuthentication, ClientAuthentication]);
        var notBefore = DateTimeOffset.UtcNow.AddHours(-1);
        return request.CreateSelfSigned(notBefore, notBefore + (lifetime ?? TimeSpan.FromDays(1)));
    }

    /// <summary>A certificate authority (may sign certificates, not be a peer).</summary>
    public static X509Certificate2 Authority(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var notBefore = DateTimeOffset.UtcNow.AddHours(-1);
        return request.CreateSelfSigned(notBefore, notBefore.AddDays(2));
    }

    /// <summary>A server-and-client certificate issued by <paramref name="authority"/>, with its private key.</summary>
    public static X509Certificate2 IssuedBy(X509Certificate2 authority, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = Request(name, key, [ServerAuthentication, ClientAuthentication]);
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        var notBefore = DateTimeOffset.UtcNow.AddMinutes(-30);
        using var issued = request.Create(authority, notBefore, notBefore.AddDays(1), RandomNumberGenerator.GetBytes(16));
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>Writes <paramref name="certificate"/> as <c>tls.crt</c> and its key as <c>tls.key</c> (PEM) into <paramref name="folder"/>.</summary>
    public static (string Certificate, string Key) WritePem(X509Certificate2 certificate, string folder)
    {
        Directory.CreateDirectory(folder);
        var paths = (Path.Combine(folder, "tls.crt"), Path.Combine(folder, "tls.key"));
        File.WriteAllText(paths.Item1, certificate.ExportCertificatePem());
        File.WriteAllText(paths.Item2, certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        return paths;
    }

    /// <summary>Writes <paramref name="certificate"/> only, without its key, as PEM.</summary>
    public static string WriteCertificatePem(X509Certificate2 certificate, string path)
    {
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    /// <summary>Writes <paramref name="certificate"/> with its key as a PFX protected by <paramref name="password"/>.</summary>
    public static string WritePfx(X509Certificate2 certificate, string path, string password)
    {
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, password));
        return path;
    }

    private static CertificateRequest Request(string name, ECDsa key, string[] usages)
    {
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var oids = new OidCollection();
        foreach (var usage in usages)
            oids.Add(new Oid(usage));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(oids, critical: false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: false));
        return request;
    }
}
