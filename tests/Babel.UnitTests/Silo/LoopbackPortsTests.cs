using System.Net;
using System.Net.Sockets;
using Babel.Silo;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary><see cref="LoopbackPorts"/>: ports free to bind, distinct, and never given twice in a process.</summary>
public sealed class LoopbackPortsTests
{
    [Fact]
    public void Ports_are_distinct_and_can_be_bound()
    {
        var ports = LoopbackPorts.Free(20);

        Assert.Equal(20, ports.Distinct().Count());
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
}
