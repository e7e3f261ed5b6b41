using System.Runtime.InteropServices;
using Babel.Contracts;
using Babel.Grains.Training;
using Babel.Modeling.Training.DataParallel;
using Babel.UnitTests.Jobs;
using Orleans.Concurrency;
using Xunit;

namespace Babel.UnitTests.Training;

/// <summary>
/// The group and reduce grains in a three-silo test cluster with a fake clock: a group forms from its ranks, sums each
/// chunk in rank order whatever the arrival order, and drops a rank that sends nothing within the step timeout — the
/// others are told at once, form a smaller group resuming from the last checkpoint, and the dropped rank is not needed.
/// </summary>
[Collection(JobClusterCollection.Name)]
public sealed class GradientReduceGrainTests(JobClusterFixture fixture)
{
    private static readonly TimeSpan _timeout = TimeSpan.FromSeconds(30);

    private static Immutable<byte[]> Bytes(params float[] values) => new(MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    private static float[] Floats(byte[] bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    private IGradientReduceGrain Shard(string job, Guid generation, int shard) =>
        fixture.Cluster.GrainFactory.GetGrain<IGradientReduceGrain>(GradientReduceGrain.Key(job, generation, shard));

    private static async Task<T> Eventually<T>(Task<T> task)
    {
        // The grain waits on the fake clock; nudge it until the call answers. A call that reached its shard only after the
        // clock was advanced (a loaded machine) waits from its own arrival: the clock moves on a second at a time for it.
        for (var i = 0; i < 200 && !task.IsCompleted; i++)
        {
            await Task.Delay(10);
            if (i % 10 == 9) JobClusterFixture.Clock.Advance(TimeSpan.FromSeconds(1));
        }
        return await task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Ranks_form_a_group_and_get_the_rank_ordered_sum_whatever_the_arrival_order()
    {
        var job = $"sum-{Guid.NewGuid():N}";
        var grain = fixture.Cluster.GrainFactory.GetGrain<ITrainingGroupGrain>(job);
        var joins = new[] { "rank-001", "rank-000" }.Select(m => grain.JoinAsync(m, 2, 0, _timeout)).ToList();
        var groups = await Task.WhenAll(joins).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(groups, g => Assert.Equal(["rank-000", "rank-001"], g.Members));
        Assert.Equal(groups[0].Generation, groups[1].Generation);
        Assert.Equal(TrainingGroupPhase.Running, groups[0].Phase);

        // Rank 1 arrives first; the sum is still (1e8 + 1) - 1e8 = 0 in float32, rank 0's values first.
        var shard = Shard(job, groups[0].Generation, 1);
        var late = shard.SumAsync(0, 2, 1, 1, Bytes(1f, 2f), _timeout);
        await Task.Delay(50);
        Assert.False(late.IsCompleted);
        var first = shard.SumAsync(0, 2, 0, 1, Bytes(1e8f, 3f), _timeout);
        var sums = await Task.WhenAll(late, first).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(sums, s => Assert.False(s.GroupChanged));
        Assert.All(sums, s => Assert.Equal([1e8f, 5f], Floats(s.Sum!)));
        // A shard of another generation is told the group changed.
        Assert.True((await Shard(job, Guid.NewGuid(), 0).SumAsync(1, 2, 0, 0, Bytes(1f), _timeout)).GroupChanged);
    }

    [Fact]
    public async Task A_silent_rank_is_dropped_after_the_step_timeout_and_the_others_resume_from_the_checkpoint_without_it()
    {
        var clock = JobClusterFixture.Clock;
        var job = $"silent-{Guid.NewGuid():N}";
        var grain = fixture.Cluster.GrainFactory.GetGrain<ITrainingGroupGrain>(job);
        var step = TimeSpan.FromSeconds(20);
        var groups = await Task.WhenAll(grain.JoinAsync("rank-000", 2, 0, step), grain.JoinAsync("rank-001", 2, 0, step)).WaitAsync(TimeSpan.FromSeconds(10));
        var generation = groups[0].Generation;
        await grain.CheckpointedAsync(generation, 10);

        // Rank 1 stops answering at step 12: rank 0's call waits for it, then learns the group changed — on the other
        // shard too, where its call waits for a chunk rank 1 did send.
        var waiting = Shard(job, generation, 0).SumAsync(12, 2, 0, 0, Bytes(1f), step);
        var other = Shard(job, generation, 1).SumAsync(12, 2, 0, 1, Bytes(1f), step);
        await Task.Delay(50);
        clock.Advance(step - TimeSpan.FromSeconds(1));
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.True((await Eventually(waiting)).GroupChanged);
        Assert.True((await Eventually(other)).GroupChanged);

        // The survivor forms a group of one at once (it waits for no one), resuming from the checkpoint of step 10.
        var alone = await grain.JoinAsync("rank-000", 2, 0, step).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(["rank-000"], alone.Members);
        Assert.Equal(10, alone.ResumeStep);
        Assert.NotEqual(generation, alone.Generation);
        var sum = await Shard(job, alone.Generation, 0).SumAsync(10, 1, 0, 0, Bytes(4f), step).WaitAsync(TimeSpan.FromSeconds(10));
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
        var job = $"lengths-{Guid.NewGuid():N}";
        var grain = fixture.Cluster.GrainFactory.GetGrain<ITrainingGroupGrain>(job);
        var groups = await Task.WhenAll(grain.JoinAsync("rank-000", 2, 0, _timeout), grain.JoinAsync("rank-001", 2, 0, _timeout)).WaitAsync(TimeSpan.FromSeconds(10));
        var exchanges = Enumerable.Range(0, 2).Select(r => new GrainGradientExchange(fixture.Cluster.GrainFactory, job, groups[0].Generation, r, 2, _timeout)).ToList();
        // Two chunks, then two with a shorter last one (a short DiLoCo round), then four (two per shard), then two of three and two values.
        var step = 0;
        foreach (var length in new[] { GrainGradientExchange.ChunkValues + 10, GrainGradientExchange.ChunkValues + 3,
            2 * GrainGradientExchange.ChunkValues + 1, 5 })
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

    [Theory]
    [InlineData(5, 1, 1, 5)]
    [InlineData(5, 2, 2, 3)]
    [InlineData(GrainGradientExchange.ChunkValues * 7 - 3, 1, 7, GrainGradientExchange.ChunkValues)]
    [InlineData(GrainGradientExchange.ChunkValues * 7 - 3, 2, 8, GrainGradientExchange.ChunkValues * 7 / 8)]
    [InlineData(GrainGradientExchange.ChunkValues * 7 - 3, 3, 9, GrainGradientExchange.ChunkValues * 7 / 9)]
    public void Every_shard_gets_as_many_chunks_of_at_most_4_MB(int values, int ranks, int chunks, int length)
    {
        Assert.Equal((chunks, length), GrainGradientExchange.Layout(values, ranks));
        Assert.True(length <= GrainGradientExchange.ChunkValues && (long)chunks * length >= values);
    }

    [Fact]
    public async Task A_group_that_waits_out_its_form_timeout_starts_with_the_ranks_that_came()
    {
        var clock = JobClusterFixture.Clock;
        var grain = fixture.Cluster.GrainFactory.GetGrain<ITrainingGroupGrain>($"form-{Guid.NewGuid():N}");
        var join = grain.JoinAsync("rank-000", 3, 0, TimeSpan.FromSeconds(5));
        await Task.Delay(50);
        Assert.False(join.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(6));
        var group = await Eventually(join);
        Assert.Equal(["rank-000"], group.Members);
        Assert.Equal(0, group.ResumeStep);
    }
}
