using System.Net;
using System.Net.Sockets;

namespace Babel.Silo;

/// <summary>
/// Free ports on 127.0.0.1 for what Babel starts on one machine: the embedded engine's silo and gateway, <c>babel serve</c>,
/// the benchmarks' silo processes and the tests' silos and services.
/// </summary>
/// <remarks>
/// A port is free when found (the kernel's choice for port 0) but not reserved: another process may bind it before the
/// service that was given it does, which then fails with "address already in use" and is started again on new ports
/// (the tests' silos and Azurite do). Within one process no port is given twice, so two services started side by side
/// never get the same one.
/// </remarks>
public static class LoopbackPorts
{
    private const int Attempts = 1_000;
    private static readonly HashSet<int> _given = [];

    /// <summary>One port nothing listens on now.</summary>
    public static int Free() => Free(1)[0];

    /// <summary><paramref name="count"/> distinct ports nothing listens on now and never given before in this process.</summary>
    public static int[] Free(int count)
    {
        var ports = new List<int>(count);
        for (var misses = 0; ports.Count < count; misses++)
        {
            if (misses == Attempts) throw new InvalidOperationException($"No new free port on 127.0.0.1 after {Attempts} tries.");
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            lock (_given)
            {
                if (_given.Add(port)) ports.Add(port);
            }
        }
        return [.. ports];
    }
}
