import Foundation
import UnCLIPModels

/// Progress of running and recent jobs, for the web page (`GET /v1/jobs/{id}`, polled while a request runs).
///
/// A client names its job with the `x-unclip-job-id` header (or gets an id back in it); the board holds each job
/// for ten minutes after it ends and at most `capacity` jobs, so it never grows without bound. Updated from the
/// model's thread at every denoising step, hence a mutex rather than an actor hop per step.
public final class JobBoard: Sendable {
    public enum Status: String, Sendable { case queued, running, succeeded, failed, cancelled }

    public struct Job: Sendable {
        public var id: String
        public var operation: String
        public var status = Status.queued
        public var stage: String?
        public var step = 0
        public var stepCount = 0
        /// Stages finished so far (each stage's steps restart at 0).
        public var stagesDone = 0
        public var created = Date()
        public var finished: Date?
        public var error: String?

        var json: [String: Any] {
            var object: [String: Any] = ["id": id, "object": "job", "operation": operation, "status": status.rawValue,
                                         "step": step, "step_count": stepCount, "stages_done": stagesDone,
                                         "created": Int(created.timeIntervalSince1970)]
            object["stage"] = stage ?? NSNull()
            object["error"] = error ?? NSNull()
            return object
        }
    }

    private let jobs = Locked<[String: Job]>([:])
    let capacity: Int
    static let retention: TimeInterval = 600

    public init(capacity: Int = 1000) { self.capacity = capacity }

    /// A client-chosen id, if it is a sane one (letters, digits, `-`, `_`; 1–64 characters).
    static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { c in
            (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || c == 45 || c == 95
        }
    }

    func queue(_ id: String, operation: String) {
        jobs.withLock { jobs in
            let now = Date()
            jobs = jobs.filter { $0.value.finished.map { now.timeIntervalSince($0) < Self.retention } ?? true }
            if jobs.count >= capacity, let oldest = jobs.values.min(by: { $0.created < $1.created }) { jobs[oldest.id] = nil }
            jobs[id] = Job(id: id, operation: operation)
        }
    }

    func progress(_ id: String, _ p: PipelineProgress) {
        jobs.withLock { jobs in
            guard var job = jobs[id] else { return }
            if let stage = job.stage, stage != p.stage.key { job.stagesDone += 1 }
            job.status = .running
            job.stage = p.stage.key
            job.step = p.step
            job.stepCount = p.stepCount
            jobs[id] = job
        }
    }

    func finish(_ id: String, _ status: Status, error: String? = nil) {
        jobs.withLock { jobs in
            jobs[id]?.status = status
            jobs[id]?.finished = Date()
            jobs[id]?.error = error
        }
    }

    public func job(_ id: String) -> Job? { jobs.withLock { $0[id] } }
}
