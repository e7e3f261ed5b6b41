using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Babel.Modeling.Chat;
using Babel.Modeling.Checkpoints;
using Babel.Modeling.Generation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;
using Babel.Storage;
using Microsoft.Extensions.Options;

namespace Babel.Silo.Serving;

/// <summary>One completion to generate: a prompt's token ids as the model sees them and the sampling of one choice.</summary>
internal sealed record CompletionRow(int[] Prompt, double Temperature, double TopP, int MaxTokens, long Seed, IReadOnlyList<string> Stop);

/// <summary>What one row produced: its text (cut at the first stop string), token counts and why it ended (<c>stop</c> or <c>length</c>).</summary>
public sealed record ServedCompletion(string Text, int PromptTokens, int CompletionTokens, string FinishReason);

/// <summary>Text a streamed row produced since its previous delta; the row's last delta carries its finish reason.</summary>
internal sealed record CompletionDelta(int Row, string Text, string? FinishReason);

/// <summary>
/// A model loaded for serving, with one generation thread. Requests wait in a bounded queue
/// (<see cref="ServingOptions.MaxQueuedRequests"/>; beyond it <see cref="TryEnqueue"/> refuses); the thread takes everything
/// waiting, up to <see cref="ServingOptions.MaxBatch"/> rows, waiting <see cref="ServingOptions.BatchWindow"/> for
/// latecomers, and generates rows with the same temperature, top-p and max tokens together, each row from its own seed,
/// so concurrent clients share batched forwards and a row's text does not depend on its batch partners.
/// A request whose client leaves is dropped from the queue, or, once generating, its rows end at the next step; a batch
/// stops as soon as every row has ended (EOS, a stop string, its length) or been abandoned.
/// </summary>
public sealed class ServedModel : IDisposable
{
    private const string Abandoned = "abandoned";

    // Guards the queue fields below; the generation thread waits on it for work (Monitor.Wait).
    private readonly object _lock = new();
    private readonly LinkedList<Pending> _queue = new();
    private int _queuedRows;
    private bool _stopping;

    private readonly CancellationTokenSource _shutdown = new();
    private readonly Thread _thread;
    private readonly ServingOptions _options;
    private readonly CausalLanguageModel _model;
    private readonly HuggingFaceTokenizer _tokenizer;
    private readonly PromptFormat _format;
    private long _batches;
    private long _rows;
    private long _generatedTokens;
    private long _abandonedRows;
    private int _activeRows;
    // Smoothed duration of one batch, for the Retry-After of a refused request.
    private long _batchTicks;

    public ServedModel(IOptions<ServingOptions> options)
    {
        _options = options.Value;
        _tokenizer = HuggingFaceTokenizer.Load(_options.ModelFolder);
        try
        {
            // Read first: a broken template or generation config is refused before the weights load.
            _format = PromptFormat.Load(_options.ModelFolder, ModelConfig.Load(_options.ModelFolder), _tokenizer);
            TorchRuntime.Initialize();
            _model = CausalLanguageModel.Load(_options.ModelFolder, _options.Dtype);
        }
        catch
        {
            _tokenizer.Dispose();
            throw;
        }
        _thread = new Thread(Run) { IsBackground = true, Name = "babel-serve " + _options.Name };
        _thread.Start();
    }

    public string Name => _options.Name;
    /// <summary>The model folder's chat template, which chat completions render; null when it has none (messages are then joined).</summary>
    public ChatTemplate? ChatTemplate => _format.ChatTemplate;
    /// <summary>The ids that end a generated row (<see cref="PromptFormat.StopTokenIds"/>: every EOS id of the model folder).</summary>
    public IReadOnlySet<int> StopIds => _format.StopTokenIds;
    public int ContextLength => _model.Config.MaxPositionEmbeddings;
    /// <summary>Batches generated (one per turn of the generation thread).</summary>
    public long Batches => Interlocked.Read(ref _batches);
    /// <summary>Rows generated, over all batches.</summary>
    public long Rows => Interlocked.Read(ref _rows);
    /// <summary>Tokens the generation loop computed: batch rows × decoding steps, rows that already ended included.</summary>
    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);
    /// <summary>Rows ended early because their client disconnected.</summary>
    public long AbandonedRows => Interlocked.Read(ref _abandonedRows);
    /// <summary>Rows of the batch the generation thread works on now (0 when idle).</summary>
    public int ActiveRows => Volatile.Read(ref _activeRows);

    /// <summary>Requests waiting for the generation thread.</summary>
    public int QueuedRequests
    {
        get
        {
            lock (_lock) return _queue.Count;
        }
    }

    /// <summary>How long a refused client should wait: the batches ahead of it at the recent batch duration, 1 to 60 s.</summary>
    public TimeSpan RetryAfter
    {
        get
        {
            int queuedRows;
            lock (_lock) queuedRows = _queuedRows;
            var batchesAhead = 1 + queuedRows / _options.MaxBatch;
            var seconds = Math.Ceiling(TimeSpan.FromTicks(Interlocked.Read(ref _batchTicks)).TotalSeconds * batchesAhead);
            return TimeSpan.FromSeconds(Math.Clamp(seconds, 1, 60));
        }
    }

    /// <summary>A completion prompt's token ids as the model sees them: BOS, then the text's tokens.</summary>
    /// <exception cref="ArgumentException">The text cannot be tokenized (e.g. it holds a lone surrogate).</exception>
    internal int[] Tokenize(string text) => _format.Completion(text);

    /// <summary>A conversation's token ids as the model sees them (<see cref="PromptFormat.Chat"/>: the chat template's rendering, else the joined contents).</summary>
    /// <exception cref="ArgumentException">The text cannot be tokenized (e.g. it holds a lone surrogate).</exception>
    /// <exception cref="UserInputException">The chat template refused the conversation or failed.</exception>
    internal int[] TokenizeChat(JsonArray messages, JsonArray? tools) => _format.Chat(messages, tools);

    /// <summary>
    /// Queues <paramref name="rows"/>; the task ends with one completion per row, in order, or is cancelled when
    /// <paramref name="cancellationToken"/> fires (the client left). Streamed rows also write their text to
    /// <paramref name="deltas"/> as it is generated. Returns null, queuing nothing, when the queue is full.
    /// </summary>
    internal Task<IReadOnlyList<ServedCompletion>>? TryEnqueue(IReadOnlyList<CompletionRow> rows, ChannelWriter<CompletionDelta>? deltas, CancellationToken cancellationToken)
    {
        var pending = new Pending(rows, deltas);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (_queue.Count >= _options.MaxQueuedRequests) return null;
            pending.Node = _queue.AddLast(pending);
            _queuedRows += rows.Count;
            ServingMetrics.QueuedRequests.Add(1);
            // Registered under the lock, so the generation thread (which disposes it) cannot take the request before it is set;
            // a token cancelled already runs Abandon right here, which re-enters the lock and takes the request out again.
            pending.Registration = cancellationToken.Register(() => Abandon(pending, cancellationToken));
            Monitor.Pulse(_lock);
        }
        return pending.Done.Task;
    }

    private void Abandon(Pending pending, CancellationToken cancellationToken)
    {
        pending.Abandoned = true;
        lock (_lock)
        {
            if (pending.Node is { } node)
            {
                // Still waiting: it leaves the queue and frees its place now.
                _queue.Remove(node);
                _queuedRows -= pending.Rows.Count;
                pending.Node = null;
                ServingMetrics.QueuedRequests.Add(-1);
            }
        }
        pending.Done.TrySetCanceled(cancellationToken);
        pending.Deltas?.TryComplete();
    }

    private void Run()
    {
        TorchRuntime.Initialize();
        while (TakeBatch() is { } taken)
        {
            var started = Stopwatch.GetTimestamp();
            Generate(taken);
            var ticks = Stopwatch.GetElapsedTime(started).Ticks;
            var previous = Interlocked.Read(ref _batchTicks);
            Interlocked.Exchange(ref _batchTicks, previous == 0 ? ticks : (3 * previous + ticks) / 4);
        }
    }

    /// <summary>Waits for a request, then takes it and whatever joins within the batch window, up to the batch's rows; null once stopping.</summary>
    private List<Pending>? TakeBatch()
    {
        lock (_lock)
        {
            while (_queue.Count == 0 && !_stopping) Monitor.Wait(_lock);
            if (_stopping) return null;
            var taken = new List<Pending> { Dequeue() };
            var rows = taken[0].Rows.Count;
            // Clients answered by the previous batch send their next requests together: a short window lets them join this one.
            var window = Stopwatch.StartNew();
            while (rows < _options.MaxBatch && !_stopping)
            {
                if (_queue.First is { } next)
                {
                    if (rows + next.Value.Rows.Count > _options.MaxBatch) break;
                    rows += next.Value.Rows.Count;
                    taken.Add(Dequeue());
                    continue;
                }
                var left = _options.BatchWindow - window.Elapsed;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_lock, left)) break;
            }
            return taken;
        }
    }

    private Pending Dequeue()
    {
        var pending = _queue.First!.Value;
        _queue.RemoveFirst();
        pending.Node = null;
        _queuedRows -= pending.Rows.Count;
        ServingMetrics.QueuedRequests.Add(-1);
        return pending;
    }

    private void Generate(List<Pending> taken)
    {
        var rows = taken.SelectMany(p => p.Rows.Select((row, index) => new RowState(p, index, row))).ToList();
        Volatile.Write(ref _activeRows, rows.Count);
        try
        {
            foreach (var group in rows.GroupBy(r => (r.Row.Temperature, r.Row.TopP, r.Row.MaxTokens)))
            {
                foreach (var chunk in group.Chunk(_options.MaxBatch)) GenerateChunk(chunk);
            }
            Interlocked.Increment(ref _batches);
            Interlocked.Add(ref _rows, rows.Count);
            foreach (var pending in taken)
            {
                if (pending.Abandoned) continue;
                pending.Done.TrySetResult([.. rows.Where(r => r.Owner == pending).Select(r => r.Result())]);
                pending.Deltas?.TryComplete();
            }
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
            foreach (var pending in taken) Cancel(pending);
        }
        catch (Exception e)
        {
            foreach (var pending in taken)
            {
                pending.Done.TrySetException(e);
                pending.Deltas?.TryComplete(e);
            }
        }
        finally
        {
            Volatile.Write(ref _activeRows, 0);
            foreach (var pending in taken) pending.Registration.Dispose();
        }
    }

    private void GenerateChunk(RowState[] chunk)
    {
        var first = chunk[0].Row;
        var options = new SamplingOptions
        {
            MaxNewTokens = first.MaxTokens,
            Temperature = first.Temperature,
            TopP = first.TopP,
            RowSeeds = [.. chunk.Select(r => r.Row.Seed)],
            EosTokenIds = _format.StopTokenIds,
        };
        ServingMetrics.PromptTokens.Add(chunk.Sum(r => (long)r.Row.Prompt.Length));
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        void Step(long[] tokens)
        {
            Interlocked.Add(ref _generatedTokens, chunk.Length);
            ServingMetrics.GeneratedTokens.Add(chunk.Length);
            var running = false;
            for (var i = 0; i < chunk.Length; i++)
            {
                var row = chunk[i];
                if (row.FinishReason is not null || EndIfAbandoned(row)) continue;
                row.Accept((int)tokens[i], _format.StopTokenIds, _tokenizer);
                running |= row.FinishReason is null;
            }
            // Nothing more anyone will read: stop at this step instead of decoding up to the longest row's max_tokens.
            if (!running) ended.Cancel();
        }
        if (chunk.Count(EndIfAbandoned) == chunk.Length) return;
        try
        {
            TextGenerator.Generate(_model, [.. chunk.Select(r => r.Row.Prompt)], options, padId: _model.Config.PadTokenId ?? _tokenizer.PadId,
                onStep: Step, cancellationToken: ended.Token);
        }
        catch (OperationCanceledException) when (ended.IsCancellationRequested && !_shutdown.IsCancellationRequested)
        {
            // Every row ended or was abandoned before the longest allowed completion: the chunk is done.
        }
    }

    private bool EndIfAbandoned(RowState row)
    {
        if (!row.Owner.Abandoned) return false;
        row.FinishReason = Abandoned;
        Interlocked.Increment(ref _abandonedRows);
        ServingMetrics.AbandonedRows.Add(1);
        return true;
    }

    private static void Cancel(Pending pending)
    {
        pending.Done.TrySetCanceled();
        pending.Deltas?.TryComplete();
    }

    public void Dispose()
    {
        List<Pending> waiting;
        lock (_lock)
        {
            _stopping = true;
            waiting = [.. _queue];
            _queue.Clear();
            Monitor.PulseAll(_lock);
        }
        foreach (var pending in waiting) Cancel(pending);
        // A running batch stops at its next step.
        _shutdown.Cancel();
        _thread.Join(TimeSpan.FromSeconds(30));
        _model.Dispose();
        _tokenizer.Dispose();
        _shutdown.Dispose();
    }

    private sealed class Pending(IReadOnlyList<CompletionRow> rows, ChannelWriter<CompletionDelta>? deltas)
    {
        public IReadOnlyList<CompletionRow> Rows { get; } = rows;
        public ChannelWriter<CompletionDelta>? Deltas { get; } = deltas;
        public TaskCompletionSource<IReadOnlyList<ServedCompletion>> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration { get; set; }
        /// <summary>Its place in the queue while it waits (guarded by the model's lock); null once taken or abandoned.</summary>
        public LinkedListNode<Pending>? Node { get; set; }
        private volatile bool _abandoned;
        public bool Abandoned
        {
            get => _abandoned;
            set => _abandoned = value;
        }
    }

    /// <summary>One row being generated: its tokens so far, its text and, for a streamed row, how much of it was sent.</summary>
    private sealed class RowState(Pending owner, int index, CompletionRow row)
    {
        private readonly List<int> _ids = [];
        private string _text = "";
        private int _sent;

        public Pending Owner { get; } = owner;
        public CompletionRow Row { get; } = row;
        public string? FinishReason { get; set; }

        public ServedCompletion Result() => new(_text, Row.Prompt.Length, _ids.Count, FinishReason ?? "length");

        public void Accept(int token, IReadOnlySet<int> stopIds, ITokenizer tokenizer)
        {
            _ids.Add(token);
            var stopToken = stopIds.Contains(token);
            if (stopToken) FinishReason = "stop";
            else if (_ids.Count >= Row.MaxTokens) FinishReason = "length";
            var streamed = Owner.Deltas is not null;
            // Text is decoded every step only when someone reads it early (a stream) or a stop string may end the row.
            if (FinishReason is null && !streamed && Row.Stop.Count == 0) return;
            // The token that ended the row is not part of its text (special or not).
            var ids = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
            _text = tokenizer.Decode(stopToken ? ids[..^1] : ids);
            var stopAt = Row.Stop.Select(s => _text.IndexOf(s, StringComparison.Ordinal)).Where(at => at >= 0).DefaultIfEmpty(-1).Min();
            if (stopAt >= 0)
            {
                _text = _text[..stopAt];
                FinishReason = "stop";
            }
            if (!streamed) return;
            var ready = FinishReason is null ? Settled() : _text.Length;
            // Decoding more tokens only extends the text (byte-level and SentencePiece decoders), so what was sent stays a prefix.
            var delta = ready > _sent ? _text[_sent..ready] : "";
            _sent = Math.Max(_sent, ready);
            if (delta.Length > 0 || FinishReason is not null) Owner.Deltas!.TryWrite(new CompletionDelta(index, delta, FinishReason));
        }

        /// <summary>
        /// How much of the text cannot change any more: without a trailing U+FFFD (a character whose bytes are still
        /// coming), a split surrogate pair, or an end that could begin a stop string.
        /// </summary>
        private int Settled()
        {
            var end = _text.Length;
            while (end > _sent && _text[end - 1] == '\uFFFD') end--;
            var hold = 0;
            foreach (var stop in Row.Stop)
            {
                for (var k = Math.Min(stop.Length - 1, end); k > hold; k--)
                {
                    if (_text.AsSpan(end - k, k).SequenceEqual(stop.AsSpan(0, k)))
                    {
                        hold = k;
                        break;
                    }
                }
            }
            end -= hold;
            if (end > 0 && char.IsHighSurrogate(_text[end - 1])) end--;
            return end;
        }
    }
}
