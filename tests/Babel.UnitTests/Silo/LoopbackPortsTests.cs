using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Babel.Silo;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>
/// <see cref="LoopbackPorts"/>: ports outside the kernel's ephemeral range (read here from /proc independently), free to bind,
/// distinct, and never given twice in a process.
/// </summary>
public sealed class LoopbackPortsTests
{
    [Fact]
    public void Ports_lie_below_the_kernels_ephemeral_range_and_can_be_bound()
    {
        var ephemeral = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split('\t', ' ')[0];
        var ephemeralStart = int.Parse(ephemeral, CultureInfo.InvariantCulture);

        var ports = LoopbackPorts.Free(20);

        Assert.Equal(20, ports.Distinct().Count());
        Assert.All(ports, port => Assert.InRange(port, 10_000, ephemeralStart - 1));
        var listeners = ports.Select(port => new TcpListener(IPAddress.Loopback, port)).ToList();
        try
        {
            foreach (var listener in listeners) listener.Start();
        }
        finally
        {
            foreach (var listener in listeners) listener.Dispose();
        }
    }

    [Fact]
    public void A_port_is_not_given_twice_in_a_process_even_after_it_is_free_again()
    {
        var given = new HashSet<int>();
        for (var i = 0; i < 200; i++)
            Assert.True(given.Add(LoopbackPorts.Free()), "A port was given twice.");
    }

    [Fact]
    public void A_port_someone_listens_on_is_not_given()
    {
        var (lowest, highest) = LoopbackPorts.Range();
        // Occupy a block of the range for a moment: 1,000 draws that did not check would meet one of its 300 ports almost surely.
        var occupied = new List<TcpListener>();
        try
        {
            for (var port = lowest; port < highest && occupied.Count < 300; port++)
            {
                var listener = new TcpListener(IPAddress.Loopback, port);
                try
                {
                    listener.Start();
                    occupied.Add(listener);
                }
                catch (SocketException)
                {
                    listener.Dispose();
                }
            }
            var taken = occupied.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToHashSet();

            var ports = LoopbackPorts.Free(1_000);

            Assert.DoesNotContain(ports, taken.Contains);
        }
        finally
        {
            foreach (var listener in occupied) listener.Dispose();
        }
    }
}
