using System.Runtime.InteropServices;
using Babel.Contracts;
using Babel.UnitTests.Jobs;
using Xunit;

namespace Babel.UnitTests.Training;

/// <summary>
/// The gradient exchange grain in a three-silo test cluster with a fake clock: a group forms from its ranks, sums each
/// chunk in rank order whatever the arrival order, and drops a rank that sends nothing within the step timeout — the
/// others are told at once, form a smaller group resuming from the last checkpoint, and the dropped rank is not needed.
/// </summary>
[Collection(JobClusterCollection.Name)]
public sealed class GradientReduceGrainTests(JobClusterFixture fixture)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromSeconds(30);

    private static byte[] Bytes(params float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static float[] Floats(byte[] bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    private static async Task<T> Eventually<T>(Task<T> task)
    {
        // The grain waits on the fake clock; nudge it until the call answers (never past what the test means to wait).
        for (var i = 0; i < 200 && !task.IsCompleted; i++) await Task.Delay(10);
        return await task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Ranks_form_a_group_and_get_the_rank_ordered_sum_whatever_the_arrival_order()
    {
        var grain = fixture.Cluster.GrainFactory.GetGrain<IGradientReduceGrain>($"sum-{Guid.NewGuid():N}");
        var joins = new[] { "rank-001", "rank-000" }.Select(m => grain.JoinAsync(m, 2, 0, _timeout)).ToList();
        var groups = await Task.WhenAll(joins).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(groups, g => Assert.Equal(["rank-000", "rank-001"], g.Members));
        Assert.Equal(groups[0].Generation, groups[1].Generation);
        Assert.Equal(TrainingGroupPhase.Running, groups[0].Phase);

        // Rank 1 arrives first; the sum is still (1e8 + 1) - 1e8 = 0 in float32, rank 0's values first.
        var late = grain.SumAsync(groups[0].Generation, 0, 1, 0, Bytes(1f, 2f), _timeout);
        await Task.Delay(50);
        Assert.False(late.IsCompleted);
        var first = grain.SumAsync(groups[0].Generation, 0, 0, 0, Bytes(1e8f, 3f), _timeout);
        var sums = await Task.WhenAll(late, first).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(sums, s => Assert.False(s.GroupChanged));
        Assert.All(sums, s => Assert.Equal([1e8f, 5f], Floats(s.Sum!)));
        // A call of another generation is told the group changed.
        Assert.True((await grain.SumAsync(Guid.NewGuid(), 1, 0, 0, Bytes(1f), _timeout)).GroupChanged);
    }

    [Fact]
    public async Task A_silent_rank_is_dropped_after_the_step_timeout_and_the_others_resume_from_the_checkpoint_without_it()
    {
        var clock = JobClusterFixture.Clock;
        var grain = fixture.Cluster.GrainFactory.GetGrain<IGradientReduceGrain>($"silent-{Guid.NewGuid():N}");
        var step = TimeSpan.FromSeconds(20);
        var groups = await Task.WhenAll(grain.JoinAsync("rank-000", 2, 0, step), grain.JoinAsync("rank-001", 2, 0, step)).WaitAsync(TimeSpan.FromSeconds(10));
        var generation = groups[0].Generation;
        await grain.CheckpointedAsync(generation, 10);

        // Rank 1 stops answering at step 12: rank 0's call waits for it, then learns the group changed.
        var waiting = grain.SumAsync(generation, 12, 0, 0, Bytes(1f), step);
        await Task.Delay(50);
        clock.Advance(step - TimeSpan.FromSeconds(1));
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.True((await Eventually(waiting)).GroupChanged);

        // The survivor forms a group of one at once (it waits for no one), resuming from the checkpoint of step 10.
        var alone = await grain.JoinAsync("rank-000", 2, 0, step).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(["rank-000"], alone.Members);
        Assert.Equal(10, alone.ResumeStep);
        Assert.NotEqual(generation, alone.Generation);
        var sum = await grain.SumAsync(alone.Generation, 10, 0, 0, Bytes(4f), step).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([4f], Floats(sum.Sum!));

        // The dropped rank comes back (its shard re-leased): the group went on without it, so it is not needed.
        var back = await grain.JoinAsync("rank-001", 2, 0, step).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.DoesNotContain("rank-001", back.Members);
        Assert.Equal(TrainingGroupPhase.Running, back.Phase);
        await grain.DoneAsync(alone.Generation, "rank-000", leader: true);
        Assert.Equal(TrainingGroupPhase.Finished, (await grain.GetGroupAsync()).Phase);
    }

    [Fact]
    public async Task Ranks_exchange_arrays_whose_length_changes_between_steps()
    {
        var grain = fixture.Cluster.GrainFactory.GetGrain<IGradientReduceGrain>($"lengths-{Guid.NewGuid():N}");
        var groups = await Task.WhenAll(grain.JoinAsync("rank-000", 2, 0, _timeout), grain.JoinAsync("rank-001", 2, 0, _timeout)).WaitAsync(TimeSpan.FromSeconds(10));
        var exchanges = Enumerable.Range(0, 2).Select(r => new Babel.Grains.Training.GrainGradientExchange(grain, groups[0].Generation, r, _timeout)).ToList();
        // Two chunks, then two chunks with a shorter last one (a short DiLoCo round), then three, then one.
        var step = 0;
        foreach (var length in new[] { Babel.Grains.Training.GrainGradientExchange.ChunkValues + 10, Babel.Grains.Training.GrainGradientExchange.ChunkValues + 3,
            2 * Babel.Grains.Training.GrainGradientExchange.ChunkValues + 1, 5 })
        {
            var values = Enumerable.Range(0, 2).Select(r => Enumerable.Range(0, length).Select(i => (float)(i % 1000 + r)).ToArray()).ToList();
            var current = step++;
            await Task.WhenAll(Enumerable.Range(0, 2).Select(r => Task.Run(() => exchanges[r].SumInPlace(current, values[r], CancellationToken.None)))).WaitAsync(TimeSpan.FromSeconds(30));
            foreach (var sum in values)
            {
                Assert.Equal(length, sum.Length);
                for (var i = 0; i < length; i++) Assert.Equal((float)(2 * (i % 1000) + 1), sum[i]);
            }
        }
    }

    [Fact]
    public async Task A_group_that_waits_out_its_form_timeout_starts_with_the_ranks_that_came()
    {
        var clock = JobClusterFixture.Clock;
        var grain = fixture.Cluster.GrainFactory.GetGrain<IGradientReduceGrain>($"form-{Guid.NewGuid():N}");
        var join = grain.JoinAsync("rank-000", 3, 0, TimeSpan.FromSeconds(5));
        await Task.Delay(50);
        Assert.False(join.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(6));
        var group = await Eventually(join);
        Assert.Equal(["rank-000"], group.Members);
        Assert.Equal(0, group.ResumeStep);
    }
}
