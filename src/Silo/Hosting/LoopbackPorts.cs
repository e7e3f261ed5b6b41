using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Babel.Silo;

/// <summary>
/// Free ports on 127.0.0.1 for what Babel starts on one machine: the embedded engine's silo and gateway, <c>babel serve</c>,
/// the benchmarks' silo processes and the tests' silos and services.
/// </summary>
/// <remarks>
/// A port found by binding port 0 lies in the kernel's ephemeral range, which every outgoing connection on the machine
/// draws its local port from: between the check and the real bind, a connection to Azurite or to another silo can take
/// it, and the silo then fails with "address already in use". These ports are drawn at random from below that range
/// (<c>/proc/sys/net/ipv4/ip_local_port_range</c>), where only an explicit bind can take them.
/// </remarks>
public static class LoopbackPorts
{
    private const int Lowest = 10_000;
    private const int Attempts = 1_000;
    private static readonly HashSet<int> _given = [];

    /// <summary>One port nothing listens on now.</summary>
    public static int Free() => Free(1)[0];

    /// <summary>
    /// <paramref name="count"/> distinct ports nothing listens on now and never given before in this process (what it
    /// started on a port given earlier may not have bound it yet).
    /// </summary>
    public static int[] Free(int count)
    {
        var (lowest, highest) = Range();
        var held = new List<TcpListener>(count);
        try
        {
            for (var misses = 0; held.Count < count;)
            {
                if (misses == Attempts)
                    throw new InvalidOperationException($"No free port on 127.0.0.1 between {lowest} and {highest} after {Attempts} tries in a row.");
                var port = Random.Shared.Next(lowest, highest + 1);
                lock (_given)
                {
                    if (!_given.Add(port))
                    {
                        misses++;
                        continue;
                    }
                }
                var listener = new TcpListener(IPAddress.Loopback, port);
                try
                {
                    listener.Start();
                    held.Add(listener);
                    misses = 0;
                }
                catch (SocketException)
                {
                    listener.Dispose();
                    misses++;
                }
            }
            return [.. held.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in held) listener.Dispose();
        }
    }

    /// <summary>The ports drawn from: from 10,000 up to just below the ephemeral range (IANA's 49152 where the kernel does not say).</summary>
    internal static (int Lowest, int Highest) Range()
    {
        var ephemeralStart = 49_152;
        const string file = "/proc/sys/net/ipv4/ip_local_port_range";
        if (File.Exists(file)
            && File.ReadAllText(file).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) is [var first, ..]
            && int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var start))
            ephemeralStart = start;
        // A machine whose ephemeral range starts that low leaves too little below it: draw from every port above 10,000.
        return ephemeralStart > Lowest + 1_000 ? (Lowest, ephemeralStart - 1) : (Lowest, IPEndPoint.MaxPort);
    }
}
