using System.Collections.Concurrent;
using Babel.Modeling.Distillation;
using Babel.Modeling.Runtime;
using Babel.Modeling.Tokenization;
using Babel.Modeling.Transformer;

namespace Babel.Silo.Serving;

/// <summary>What <c>babel serve</c> serves: a model folder under a name.</summary>
public sealed class ServingOptions
{
    public required string ModelFolder { get; init; }
    public required string Name { get; init; }
    /// <summary>Rows generated together at most; concurrent requests waiting in the queue are batched up to this.</summary>
    public int MaxBatch { get; init; } = 32;
    /// <summary>How long the generation thread waits for more requests to join a batch after the first arrives.</summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(5);
    /// <summary>Environment variable whose value, when set, every <c>/v1</c> request must present as <c>Authorization: Bearer</c>.</summary>
    public string ApiKeyVariable { get; init; } = "BABEL_SERVE_API_KEY";
}

/// <summary>
/// A model loaded for serving, with one generation thread. Requests queue up; the thread takes everything waiting (up to
/// <see cref="ServingOptions.MaxBatch"/> rows, waiting <see cref="ServingOptions.BatchWindow"/> for latecomers) and generates it as batches through <see cref="LocalTeacher"/> (rows with the
/// same sampling parameters together, each row from its own seed), so concurrent clients share batched forwards.
/// </summary>
public sealed class ServedModel : IDisposable
{
    private readonly BlockingCollection<Pending> _queue = new();
    private readonly Thread _thread;
    private readonly ServingOptions _options;
    private readonly CausalLanguageModel _model;
    private readonly HuggingFaceTokenizer _tokenizer;
    private long _batches;
    private long _rows;

    public ServedModel(ServingOptions options)
    {
        _options = options;
        TorchRuntime.Initialize();
        _model = CausalLanguageModel.Load(options.ModelFolder);
        _tokenizer = HuggingFaceTokenizer.Load(options.ModelFolder);
        _thread = new Thread(Run) { IsBackground = true, Name = "babel-serve " + options.Name };
        _thread.Start();
    }

    public string Name => _options.Name;
    public int ContextLength => _model.Config.MaxPositionEmbeddings;
    public long Batches => Interlocked.Read(ref _batches);
    public long Rows => Interlocked.Read(ref _rows);

    public int CountTokens(string text) => _tokenizer.Encode(text).Length + 1;

    public Task<IReadOnlyList<TeacherResult>> CompleteAsync(IReadOnlyList<TeacherRequest> requests, CancellationToken cancellationToken)
    {
        var pending = new Pending(requests, new TaskCompletionSource<IReadOnlyList<TeacherResult>>(TaskCreationOptions.RunContinuationsAsynchronously));
        _queue.Add(pending, cancellationToken);
        return pending.Done.Task.WaitAsync(cancellationToken);
    }

    private void Run()
    {
        TorchRuntime.Initialize();
        using var teacher = new LocalTeacher(_model, _tokenizer, _options.Name, _options.MaxBatch);
        foreach (var first in _queue.GetConsumingEnumerable())
        {
            var taken = new List<Pending> { first };
            var rows = first.Requests.Count;
            // Clients answered by the previous batch send their next requests together: a short window lets them join this one.
            var window = System.Diagnostics.Stopwatch.StartNew();
            while (rows < _options.MaxBatch)
            {
                var left = _options.BatchWindow - window.Elapsed;
                if (!_queue.TryTake(out var next, left > TimeSpan.Zero ? left : TimeSpan.Zero)) break;
                taken.Add(next);
                rows += next.Requests.Count;
            }
            try
            {
                var results = teacher.CompleteAsync([.. taken.SelectMany(p => p.Requests)], CancellationToken.None).GetAwaiter().GetResult();
                Interlocked.Increment(ref _batches);
                Interlocked.Add(ref _rows, rows);
                var offset = 0;
                foreach (var pending in taken)
                {
                    pending.Done.TrySetResult([.. results.Skip(offset).Take(pending.Requests.Count)]);
                    offset += pending.Requests.Count;
                }
            }
            catch (Exception e)
            {
                foreach (var pending in taken) pending.Done.TrySetException(e);
            }
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(30));
        _model.Dispose();
        _tokenizer.Dispose();
        _queue.Dispose();
    }

    private sealed record Pending(IReadOnlyList<TeacherRequest> Requests, TaskCompletionSource<IReadOnlyList<TeacherResult>> Done);
}
