using Babel.Grains.Engine;
using Babel.Grains.Experts;
using Babel.Grains.LanguageModels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Babel.Grains;

/// <summary>Registers what the job engine needs in a silo: job kinds, metrics, worker options and silo-pinned placement.</summary>
public static class GrainsRegistration
{
    public static ISiloBuilder AddBabelGrains(this ISiloBuilder silo)
    {
        silo.Services.AddPlacementDirector<SiloPinnedPlacement, SiloPinnedPlacementDirector>();
        silo.Services.AddBabelJobKinds();
        silo.Services.AddMetrics();
        silo.Services.TryAddSingleton<JobMetrics>();
        silo.Services.TryAddSingleton(ServedJobs.Every());
        silo.Services.TryAddSingleton<Training.TrainingMetrics>();
        silo.Services.TryAddSingleton(TimeProvider.System);
        silo.Services.AddOptions<WorkerOptions>();
        return silo;
    }

    /// <summary>The job kinds, for silos (to run shards) and clients (to plan them).</summary>
    public static IServiceCollection AddBabelJobKinds(this IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, PerplexityJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, TokenizeJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, ProfileJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, MoefyJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Text2Tree.Text2TreeGridJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, PruningEvaluationJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, SparseActivationJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Distillation.DistillJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Distillation.StudentGridJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Benchmarks.EngineBenchmarkJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Training.PretrainJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Training.FinetuneJob>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IJobKind, Distillation.StudentTrainJob>());
        services.TryAddSingleton<JobKindCatalog>();
        return services;
    }
}
