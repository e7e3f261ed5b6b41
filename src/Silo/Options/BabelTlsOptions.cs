namespace Babel.Silo;

/// <summary>
/// TLS on the silo-to-silo and gateway connections (Microsoft.Orleans.Connections.Security), bound from <c>Babel:Tls</c>
/// (environment: <c>Babel__Tls__Enabled=true</c> …). Silos and the <c>babel --cluster</c> client read the same settings.
/// Both ends present the certificate and accept only a peer whose certificate is the same one, or, when
/// <see cref="CertificateAuthorityPath"/> is set, one issued by that authority. The password of an encrypted PFX or PEM key
/// is deliberately not here: it is read only from the environment variable <see cref="PasswordKey"/>, so options dumps and
/// logs can never carry it.
/// </summary>
public sealed class BabelTlsOptions
{
    public const string Section = "Babel:Tls";

    /// <summary>The environment variable (configuration key) that holds the certificate's password, if it has one.</summary>
    public const string PasswordKey = "BABEL_TLS_CERTIFICATE_PASSWORD";

    /// <summary>Whether silo and gateway connections use TLS. Default false; every silo and client of a cluster must agree.</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// The certificate file: PKCS#12 (<c>.pfx</c>/<c>.p12</c>, with its key) or PEM (<c>.crt</c>/<c>.pem</c>, with the key in
    /// the same file or in <see cref="KeyPath"/>), e.g. <c>/etc/babel/tls/tls.crt</c> mounted from a Kubernetes TLS Secret.
    /// Its key usage must allow both server and client authentication (or not be restricted), since every silo is both.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key when it is not in <see cref="CertificatePath"/>, e.g. <c>/etc/babel/tls/tls.key</c>.</summary>
    public string? KeyPath { get; set; }

    /// <summary>
    /// PEM file of the certificate authorities a peer's certificate must chain to (e.g. a cert-manager Secret's
    /// <c>ca.crt</c>); host names are not checked, since silos are reached by IP. Null (default): a peer must present
    /// exactly this silo's certificate, which suits one certificate shared by the whole cluster.
    /// </summary>
    public string? CertificateAuthorityPath { get; set; }
}
