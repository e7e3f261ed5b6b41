using Babel.Grains.Engine;
using Babel.Silo;
using Xunit;

namespace Babel.UnitTests.Silo;

public class ComputeDevicesTests
{
    [Fact]
    public void Without_cuda_each_cpu_slot_is_a_device()
    {
        Assert.Equal(["cpu:0", "cpu:1", "cpu:2"], ComputeDevices.Resolve(new WorkerOptions { CpuSlots = 3 }, cudaDevices: 0));
        Assert.Equal(["cpu:0"], ComputeDevices.Resolve(new WorkerOptions(), cudaDevices: 0));
        Assert.Empty(ComputeDevices.Resolve(new WorkerOptions { CpuSlots = 0 }, cudaDevices: 0));
    }

    [Fact]
    public void Cuda_devices_replace_cpu_slots()
    {
        Assert.Equal(["cuda:0", "cuda:1"], ComputeDevices.Resolve(new WorkerOptions { CpuSlots = 4 }, cudaDevices: 2));
    }

    [Fact]
    public void The_devices_override_wins_over_detection()
    {
        Assert.Equal(["cuda:1", "cpu:0"], ComputeDevices.Resolve(new WorkerOptions { Devices = " cuda:1 ,cpu:0,cuda:1" }, cudaDevices: 4));
    }

    [Fact]
    public void Discover_on_this_cpu_machine_returns_the_cpu_slots()
    {
        var devices = new ComputeDevices(Microsoft.Extensions.Options.Options.Create(new WorkerOptions { CpuSlots = 2 }));

        Assert.Equal(["cpu:0", "cpu:1"], devices.Discover());
    }

    [Fact]
    public void Device_worker_key_is_the_parsable_silo_address_then_the_device()
    {
        var silo = SiloAddress.FromParsableString("127.0.0.1:11111@154835895");

        Assert.Equal("127.0.0.1:11111@154835895/cuda:1", SiloStartup.DeviceWorkerKey(silo, "cuda:1"));
    }
}
