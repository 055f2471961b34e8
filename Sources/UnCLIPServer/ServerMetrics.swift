import Foundation
import Hummingbird
import Metrics
import Prometheus

/// The server's metrics through swift-metrics, exported in Prometheus' text format at `/metrics`.
///
/// Each application has its own registry (no global `MetricsSystem.bootstrap`), so tests can build many.
public final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let queueDepth: Metrics.Gauge
    private let storedBytes: Metrics.Gauge
    private let imageSeconds: Metrics.Timer
    private let batches: Metrics.Gauge
    private let batchedImages: Metrics.Gauge

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // One image takes from a fraction of a second (embedded model, few steps) to minutes (Karlo on a CPU).
        factory.durationHistogramBuckets["unclip_image_seconds"] =
            [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300].map { Duration.milliseconds(Int64($0 * 1000)) }
        self.factory = factory
        queueDepth = Metrics.Gauge(label: "unclip_queue_depth", factory: factory)
        storedBytes = Metrics.Gauge(label: "unclip_files_bytes", factory: factory)
        imageSeconds = Metrics.Timer(label: "unclip_image_seconds", factory: factory)
        batches = Metrics.Gauge(label: "unclip_generation_batches_total", factory: factory)
        batchedImages = Metrics.Gauge(label: "unclip_generation_batch_images_total", factory: factory)
    }

    /// One answered request, by route pattern (not path, so ids do not explode the label set) and status.
    func request(route: String, status: Int) {
        Metrics.Counter(label: "unclip_requests_total", dimensions: [("route", route), ("status", String(status))], factory: factory).increment()
    }

    /// `count` images made by `operation` in `seconds` of model time.
    func images(_ count: Int, operation: String, seconds: Double) {
        Metrics.Counter(label: "unclip_images_generated_total", dimensions: [("operation", operation)], factory: factory).increment(by: count)
        let each = seconds / Double(max(count, 1))
        for _ in 0..<count { imageSeconds.recordNanoseconds(Int64(each * 1e9)) }
    }

    /// A job whose client went away before it finished.
    func cancelled(operation: String) {
        Metrics.Counter(label: "unclip_jobs_cancelled_total", dimensions: [("operation", operation)], factory: factory).increment()
    }

    /// The text exposition, with the gauges read now; `batches` the model's generation batches and their images
    /// so far (their ratio is how many requests shared a batch).
    func exposition(queued: Int, fileBytes: Int, batches counts: (batches: Int, images: Int)) -> String {
        queueDepth.record(queued)
        storedBytes.record(fileBytes)
        batches.record(counts.batches)
        batchedImages.record(counts.images)
        return registry.emitToString()
    }
}

/// Counts every answer by route and status; inside it, errors have already become responses.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        metrics.request(route: context.endpointPath ?? "unmatched", status: response.status.code)
        return response
    }
}
