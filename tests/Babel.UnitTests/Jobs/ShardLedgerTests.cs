using System.Collections.Immutable;
using System.Text;
using Babel.Contracts;
using Babel.Grains.Engine;
using Xunit;

namespace Babel.UnitTests.Jobs;

/// <summary>The job's in-memory shard state: what a journal replay rebuilds, and how the next shard is chosen.</summary>
public class ShardLedgerTests
{
    private static readonly DateTimeOffset _start = DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture);
    private static readonly JobSpec _spec = new("test-kind", "{}", MaxAttempts: 3, LeaseDuration: TimeSpan.FromMinutes(1));

    private static ShardSpec[] Plan(int shards) => [.. Enumerable.Range(0, shards).Select(i => new ShardSpec($"s{i}", "{}", i + 1))];

    private static ImmutableSortedDictionary<string, long> Totals(long value) =>
        ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("x", value)]);

    /// <summary>Drives a ledger with random workers that complete, fail, drop and repeat; returns every entry it applied, in order.</summary>
    private static (ShardLedger Ledger, List<JournalEntry> Journal, Dictionary<int, long> Counted) Drive(ShardSpec[] plan, int seed)
    {
        var random = new Random(seed);
        var ledger = new ShardLedger(_spec, plan);
        var journal = new List<JournalEntry>();
        var counted = new Dictionary<int, long>();
        var held = new List<JournalEntry>();
        var now = _start;
        void Apply(JournalEntry entry)
        {
            if (ledger.Apply(entry)) journal.Add(entry);
        }
        for (var step = 0; step < 4000 && ledger.Phase == JobPhase.Running; step++)
        {
            now += TimeSpan.FromSeconds(random.Next(0, 20));
            var roll = random.Next(10);
            if (roll < 4 || held.Count == 0)
            {
                foreach (var entry in ledger.ChooseLease($"w{random.Next(5)}", now))
                {
                    Apply(entry);
                    if (entry.Kind == ShardEventKind.Leased) held.Add(entry);
                }
                continue;
            }
            var lease = held[random.Next(held.Count)];
            if (roll < 8)
            {
                // Completions may repeat (a retried call) and may quote an old lease: each shard's value is fixed, as shard results are deterministic.
                var value = 1000L * lease.Shard + 7;
                var completion = new JournalEntry(ShardEventKind.Completed, lease.Shard, lease.Lease, now, lease.Worker, lease.Attempt, $"r{lease.Shard}", Totals(value), 0.5, 0.01);
                if (ledger.Apply(completion))
                {
                    journal.Add(completion);
                    counted.TryAdd(lease.Shard, value);
                }
                if (random.Next(3) > 0) held.Remove(lease);
            }
            else if (roll == 8)
            {
                Apply(new JournalEntry(ShardEventKind.Failed, lease.Shard, lease.Lease, now, lease.Worker, lease.Attempt, Error: "boom"));
                held.Remove(lease);
            }
            else
            {
                ledger.Renew(plan[lease.Shard].ShardId, lease.Lease, now);
            }
        }
        return (ledger, journal, counted);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Replaying_the_journal_rebuilds_the_same_state_and_totals_sum_each_counted_shard_once(int seed)
    {
        var plan = Plan(40);
        var (live, journal, counted) = Drive(plan, seed);
        var replayed = new ShardLedger(_spec, plan);
        foreach (var entry in journal) replayed.Apply(entry);

        Assert.Equal(live.Phase, replayed.Phase);
        Assert.Equal(live.Error, replayed.Error);
        Assert.Equal(live.Totals, replayed.Totals);
        Assert.Equal(live.ItemsDone, replayed.ItemsDone);
        Assert.Equal(live.Progress().Select(p => (p.ShardId, p.Phase, p.Attempts, p.ResultArtifact)), replayed.Progress().Select(p => (p.ShardId, p.Phase, p.Attempts, p.ResultArtifact)));
        // An independent sum: the fixed value of every shard the driver saw counted, once each.
        Assert.Equal(counted.Values.Sum(), live.Totals.GetValueOrDefault("x"));
        Assert.Equal(counted.Keys.Sum(s => plan[s].Items), live.ItemsDone);
        Assert.Equal(counted.Count, live.Count(ShardPhase.Done));
    }

    [Fact]
    public void A_journal_whose_lines_landed_twice_replays_to_the_same_state()
    {
        var plan = Plan(30);
        var (live, journal, _) = Drive(plan, 7);
        var doubled = new ShardLedger(_spec, plan);
        // A storage retry can land an append twice: every line once more, right after itself.
        foreach (var entry in journal)
        {
            doubled.Apply(entry);
            doubled.Apply(entry);
        }
        Assert.Equal(live.Totals, doubled.Totals);
        Assert.Equal(live.Phase, doubled.Phase);
        Assert.Equal(live.Progress().Select(p => (p.Phase, p.Attempts)), doubled.Progress().Select(p => (p.Phase, p.Attempts)));
    }

    [Fact]
    public void Leases_restored_after_a_restart_expire_a_lease_duration_after_it_not_before()
    {
        var plan = Plan(2);
        var live = new ShardLedger(_spec, plan);
        var lease = live.ChooseLease("w", _start).Single();
        live.Apply(lease);

        // The grain restarts ten minutes later: the lease's own expiry has long passed, but its worker may still be computing.
        var restart = _start + TimeSpan.FromMinutes(10);
        var replayed = new ShardLedger(_spec, plan) { LeaseFloor = restart + _spec.LeaseDuration };
        replayed.Apply(lease);
        Assert.Equal("s1", plan[replayed.ChooseLease("other", restart).Single().Shard].ShardId);
        Assert.True(replayed.Renew("s0", lease.Lease, restart + TimeSpan.FromSeconds(30)));
        // Not renewed again: a lease duration after the renewal it expires and goes to the next worker asking, attempt 2.
        var later = replayed.ChooseLease("other", restart + TimeSpan.FromSeconds(30) + _spec.LeaseDuration);
        Assert.Equal([ShardEventKind.LeaseExpired, ShardEventKind.Leased], later.Select(e => e.Kind));
        Assert.Equal(2, later[1].Attempt);
    }

    [Fact]
    public void Failed_shards_are_retried_before_new_ones_and_a_worker_that_asks_again_resumes_its_shards()
    {
        var plan = Plan(4);
        var ledger = new ShardLedger(_spec, plan);
        var first = ledger.ChooseLease("silo/cpu:0", _start).Single();
        ledger.Apply(first);
        var second = ledger.ChooseLease("silo/cpu:0", _start).Single();
        ledger.Apply(second);
        var resumed = ledger.Resume("silo/cpu:0", _start, 8);
        Assert.Equal([first.Shard, second.Shard], resumed.Select(e => e.Shard));
        Assert.All(resumed, e => Assert.Equal(1, e.Attempt));
        Assert.Empty(ledger.Resume("silo/cpu:1", _start, 8));
        foreach (var entry in resumed) ledger.Apply(entry);
        ledger.Apply(new JournalEntry(ShardEventKind.Failed, first.Shard, resumed[0].Lease, _start, "silo/cpu:0", 1, Error: "boom"));
        var retry = ledger.ChooseLease("w", _start).Single();
        Assert.Equal(first.Shard, retry.Shard);
        Assert.Equal(2, retry.Attempt);
    }

    [Fact]
    public void A_failure_on_a_bad_input_ends_the_job_at_once_as_an_input_error()
    {
        var plan = Plan(3);
        var ledger = new ShardLedger(_spec, plan);
        var lease = ledger.ChooseLease("w", _start).Single();
        ledger.Apply(lease);
        var failure = new JournalEntry(ShardEventKind.Failed, lease.Shard, lease.Lease, _start, "w", 1, Error: "eng.jsonl line 3 is not UTF-8.", InputError: true);
        ledger.Apply(failure);
        // Attempt 1 of 3, yet no retry: the same input would fail the same way.
        Assert.Equal(JobPhase.Failed, ledger.Phase);
        Assert.True(ledger.InputError);
        Assert.Contains("eng.jsonl line 3 is not UTF-8.", ledger.Error, StringComparison.Ordinal);
        Assert.Empty(ledger.ChooseLease("w", _start));

        var replayed = new ShardLedger(_spec, plan);
        replayed.Apply(lease);
        replayed.Apply(failure);
        Assert.True(replayed.InputError);
        Assert.Equal(ledger.Error, replayed.Error);
    }

    [Fact]
    public void A_journal_line_cut_short_by_a_crash_is_skipped_and_a_corrupt_line_is_named()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        new JournalEntry(ShardEventKind.Leased, 0, Guid.NewGuid(), _start, "w", 1).WriteLine(buffer);
        new JournalEntry(ShardEventKind.Leased, 1, Guid.NewGuid(), _start, "w", 1).WriteLine(buffer);
        var whole = buffer.WrittenSpan.ToArray();
        var torn = whole[..^10];
        Assert.Single(JournalEntry.ReadLines(torn, "j/000001-0000.jsonl"));
        Assert.Equal(2, JournalEntry.ReadLines(whole, "j/000001-0000.jsonl").Count);

        var corrupt = Encoding.UTF8.GetBytes("{\"k\":\"Leased\",\"s\":0}\nnot json\n");
        var error = Assert.Throws<InvalidDataException>(() => JournalEntry.ReadLines(corrupt, "j/000001-0000.jsonl"));
        Assert.Contains("j/000001-0000.jsonl", error.Message, StringComparison.Ordinal);
        Assert.Contains("line 2", error.Message, StringComparison.Ordinal);
    }
}
