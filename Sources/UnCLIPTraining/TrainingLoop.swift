import Foundation
import UnCLIPModels
import Synchronization
import UnCLIPNN
import UnCLIPImage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Optimisation settings

/// The optimisation settings every stage shares: steps, batch, AdamW, learning-rate schedule, EMA, checkpoints, seed.
///
/// Decoding accepts partial JSON: an absent key keeps the stage's default (the `defaults` passed to
/// `init(from:defaults:)`), so a CLI or config file only names what it changes.
public struct TrainingSchedule: Codable, Equatable, Sendable {
    /// Optimizer steps in total.
    public var steps: Int
    /// Samples per step.
    public var batchSize: Int
    /// Peak learning rate, reached at the end of the warm-up.
    public var learningRate: Float
    /// Learning rate at the end of the cosine decay.
    public var minLearningRate: Float
    /// Steps of linear warm-up from 0 (at most `steps` are used).
    public var warmupSteps: Int
    /// AdamW decoupled weight decay λ.
    public var weightDecay: Float
    /// AdamW β₁, β₂ and ε.
    public var beta1: Float
    public var beta2: Float
    public var adamEpsilon: Float
    /// Largest joint gradient 2-norm; larger gradients are scaled down (0 disables clipping).
    public var gradientClip: Float
    /// Decay of the exponential moving average of the weights (the EMA weights are what gets exported).
    public var emaDecay: Double
    /// A checkpoint is written every this many steps (and at the end, and on Ctrl-C).
    public var checkpointEvery: Int
    /// A JSONL loss line is written every this many steps.
    public var logEvery: Int
    /// Seed of every random choice of the stage (initial weights, batches, timesteps, noise, dropout).
    public var seed: UInt64

    public init(steps: Int, batchSize: Int, learningRate: Float, minLearningRate: Float = 0, warmupSteps: Int,
                weightDecay: Float = 0.01, beta1: Float = 0.9, beta2: Float = 0.999, adamEpsilon: Float = 1e-8,
                gradientClip: Float = 1.0, emaDecay: Double = 0.999, checkpointEvery: Int = 500, logEvery: Int = 1,
                seed: UInt64 = 0) {
        self.steps = steps
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.minLearningRate = minLearningRate
        self.warmupSteps = warmupSteps
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.adamEpsilon = adamEpsilon
        self.gradientClip = gradientClip
        self.emaDecay = emaDecay
        self.checkpointEvery = checkpointEvery
        self.logEvery = logEvery
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, batchSize = "batch_size", learningRate = "learning_rate", minLearningRate = "min_learning_rate"
        case warmupSteps = "warmup_steps", weightDecay = "weight_decay", beta1 = "beta1", beta2 = "beta2"
        case adamEpsilon = "adam_epsilon", gradientClip = "gradient_clip", emaDecay = "ema_decay"
        case checkpointEvery = "checkpoint_every", logEvery = "log_every", seed
    }

    /// Decodes the keys present and keeps `defaults` for the others.
    public init(from decoder: Decoder, defaults d: TrainingSchedule) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "training schedule")
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        minLearningRate = try c.decodeIfPresent(Float.self, forKey: .minLearningRate) ?? d.minLearningRate
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? d.weightDecay
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? d.beta2
        adamEpsilon = try c.decodeIfPresent(Float.self, forKey: .adamEpsilon) ?? d.adamEpsilon
        gradientClip = try c.decodeIfPresent(Float.self, forKey: .gradientClip) ?? d.gradientClip
        emaDecay = try c.decodeIfPresent(Double.self, forKey: .emaDecay) ?? d.emaDecay
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? d.logEvery
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    }

    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, defaults: TrainingSchedule(steps: 1000, batchSize: 32, learningRate: 1e-4, warmupSteps: 100))
    }

    /// Rejects settings no run can use, naming the option.
    public func validate(stage: Stage) throws {
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: stage.key, option: option, value: "\(value)", rule: rule) }
        }
        try check(steps >= 1, "steps", steps, "at least 1")
        try check(batchSize >= 1, "batch_size", batchSize, "at least 1")
        try check(learningRate > 0 && learningRate.isFinite, "learning_rate", learningRate, "a positive number")
        try check(minLearningRate >= 0 && minLearningRate <= learningRate, "min_learning_rate", minLearningRate, "between 0 and learning_rate")
        try check(warmupSteps >= 0, "warmup_steps", warmupSteps, "0 or more")
        try check(emaDecay >= 0 && emaDecay < 1, "ema_decay", emaDecay, "in [0, 1)")
        try check(checkpointEvery >= 1, "checkpoint_every", checkpointEvery, "at least 1")
        try check(logEvery >= 1, "log_every", logEvery, "at least 1")
        try check(gradientClip >= 0, "gradient_clip", gradientClip, "0 (off) or positive")
    }

    /// The learning rate of every step: linear warm-up, then a half cosine down to `minLearningRate`.
    ///
    /// A warm-up longer than the run (a short run with a stage's default warm-up) is cut to the run's length.
    public var learningRateSchedule: LearningRateSchedule {
        .warmupCosine(baseLR: learningRate, warmupSteps: min(warmupSteps, steps), totalSteps: steps, minLR: minLearningRate)
    }
}

// MARK: - Errors, progress

/// Why a training run stopped or refused to start.
public enum TrainingError: Error, CustomStringConvertible {
    case invalidConfiguration(stage: String, option: String, value: String, rule: String)
    /// A stage needs the output of an earlier one (e.g. the prior needs the trained CLIP).
    case missingPrerequisite(stage: Stage, path: String, hint: String)
    case emptyDataset(stage: Stage)
    /// Every sample of a batch failed to load.
    case noUsableSamples(stage: Stage, step: Int)
    case nonFiniteLoss(stage: Stage, step: Int, loss: Float)
    case checkpointMismatch(path: String, reason: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidConfiguration(stage, option, value, rule):
            return "\(stage): \(option) = \(value) is invalid; it must be \(rule)"
        case let .missingPrerequisite(stage, path, hint):
            return "\(stage): \(path) is missing (\(hint))"
        case let .emptyDataset(stage):
            return "\(stage): the dataset has no samples"
        case let .noUsableSamples(stage, step):
            return "\(stage): no sample of the batch at step \(step) could be loaded (see the skipped-sample reports)"
        case let .nonFiniteLoss(stage, step, loss):
            return "\(stage): the loss became \(loss) at step \(step); lower the learning rate or resume from the last checkpoint"
        case let .checkpointMismatch(path, reason):
            return "checkpoint \(path) does not fit this run: \(reason)"
        case let .io(path, reason):
            return "\(path): \(reason)"
        }
    }
}

/// Where a stage's training stands after a step.
public struct TrainingProgress: Sendable {
    public var stage: Stage
    /// Steps completed (1-based after the first step).
    public var step: Int
    public var totalSteps: Int
    /// This step's loss and a smoothed loss (EMA over about 50 steps).
    public var loss: Float
    public var smoothedLoss: Float
    public var learningRate: Float
    /// Gradient 2-norm before clipping.
    public var gradientNorm: Float
    /// Recent throughput and the estimated seconds left.
    public var stepsPerSecond: Double
    public var etaSeconds: Double
}

/// What a training run reports to its caller (the CLI draws the bar from `.step`; the others print as lines).
public enum TrainingEvent: Sendable, CustomStringConvertible {
    /// A step finished.
    case step(TrainingProgress)
    /// A sample could not be loaded; it was left out of its batch.
    case skippedSample(stage: Stage, index: Int, message: String)
    /// A checkpoint was written (step count, file).
    case checkpoint(stage: Stage, step: Int, path: String)
    /// Informational text (stage start, resume point, export).
    case message(stage: Stage, text: String)

    public var description: String {
        switch self {
        case .step(let p):
            return String(format: "%@ step %d/%d loss %.4f (avg %.4f) lr %.2e %.2f steps/s ETA %.0f s", p.stage.description, p.step, p.totalSteps,
                          p.loss, p.smoothedLoss, p.learningRate, p.stepsPerSecond, p.etaSeconds)
        case let .skippedSample(stage, index, message): return "\(stage): skipped sample \(index): \(message)"
        case let .checkpoint(stage, step, path): return "\(stage): checkpoint at step \(step) → \(path)"
        case let .message(stage, text): return "\(stage): \(text)"
        }
    }
}

/// How a stage run ended.
public struct TrainingOutcome: Sendable {
    public var stage: Stage
    /// Steps completed in total (including those of earlier sessions).
    public var completedSteps: Int
    public var totalSteps: Int
    /// True when Ctrl-C stopped the run early (a checkpoint was written first).
    public var interrupted: Bool
    /// The last smoothed loss (NaN when no step ran in this session).
    public var finalLoss: Float
    /// Average throughput of this session.
    public var stepsPerSecond: Double
    /// Whether the stage's components were exported (only when training completed).
    public var exported: Bool { completedSteps >= totalSteps && !interrupted }
}

// MARK: - Ctrl-C

/// Set by the SIGINT handler, polled once per step.
private let interruptRequested = Atomic<Bool>(false)

/// Graceful Ctrl-C for training: the first SIGINT asks the running stage to checkpoint and stop; the handler then
/// restores the default action, so a second Ctrl-C kills the process at once.
public enum TrainingInterrupt {
    /// Installs the SIGINT handler (idempotent).
    public static func install() {
        // Touch the flag before the handler can run: a lazily initialised global must not initialise in a handler.
        interruptRequested.store(false, ordering: .relaxed)
        signal(SIGINT) { _ in
            interruptRequested.store(true, ordering: .relaxed)
            signal(SIGINT, SIG_DFL)
        }
    }

    /// Whether a stop was requested.
    public static var isRequested: Bool { interruptRequested.load(ordering: .relaxed) }

    /// Asks the running stage to checkpoint and stop, as Ctrl-C does (for tests and embedding applications).
    public static func request() { interruptRequested.store(true, ordering: .relaxed) }

    /// Clears a request (a new run starts unrequested).
    public static func reset() { interruptRequested.store(false, ordering: .relaxed) }
}

// MARK: - Deterministic randomness

/// Random streams of a training run, each a pure function of (seed, step, purpose).
///
/// Nothing random is carried from step to step, so a run resumed from a checkpoint at step s draws exactly what an
/// uninterrupted run draws at step s: the checkpoint needs only the seed and the step.
public enum TrainingRandom {
    /// What a stream is used for; each gets its own Philox stream per step.
    public enum Purpose: UInt64 {
        case batch = 1, timesteps, noise, dropout, augmentation, crop, negatives, degradation
    }

    /// The generator for `purpose` at `step`.
    public static func generator(seed: UInt64, step: Int, _ purpose: Purpose) -> Philox {
        Philox(seed: seed, stream: UInt64(step) << 8 | purpose.rawValue)
    }

    /// The generator for initial weights (step-independent).
    public static func initialization(seed: UInt64) -> Philox {
        Philox(seed: seed, stream: UInt64.max)
    }

    /// A uniform integer in 0 ..< n.
    public static func int(_ n: Int, using rng: inout Philox) -> Int {
        Int(rng.next() % UInt64(n))
    }

    /// A uniform Float in [0, 1).
    public static func unit(using rng: inout Philox) -> Float {
        Float(rng.nextUInt32() >> 8) * 0x1p-24
    }
}

/// Batches that walk the dataset in a fresh random order every epoch, as a pure function of (seed, step).
public struct BatchSampler {
    public let count: Int
    public let batchSize: Int
    public let seed: UInt64
    private var cachedEpoch = -1
    private var permutation: [Int] = []

    public init(count: Int, batchSize: Int, seed: UInt64) {
        self.count = count
        self.batchSize = batchSize
        self.seed = seed
    }

    /// The dataset indices of the batch at `step`.
    public mutating func indices(step: Int) -> [Int] {
        (0..<batchSize).map { k in
            let position = step * batchSize + k
            return index(epoch: position / count, position: position % count)
        }
    }

    private mutating func index(epoch: Int, position: Int) -> Int {
        if epoch != cachedEpoch {
            // Fisher–Yates with a per-epoch Philox stream (high bit set: disjoint from the per-step streams).
            var rng = Philox(seed: seed, stream: 1 << 63 | UInt64(epoch))
            permutation = Array(0..<count)
            for i in stride(from: count - 1, to: 0, by: -1) {
                permutation.swapAt(i, TrainingRandom.int(i + 1, using: &rng))
            }
            cachedEpoch = epoch
        }
        return permutation[position]
    }
}

/// Loads a batch and prepares each image with `prepare` (e.g. box-filtering to the model's size); entries whose
/// loading or preparation fails are reported with their index and left out.
func loadBatch<T>(_ dataset: some CaptionedImageDataset, indices: [Int], side: Int? = nil, stage: Stage, progress: (TrainingEvent) -> Void,
                  prepare: (RGBImage) throws -> T) -> (items: [T], captions: [String]) {
    var items: [T] = [], captions: [String] = []
    for i in indices {
        do {
            let sample = try side.map { try dataset.sample(i, side: $0) } ?? dataset.sample(i)
            items.append(try prepare(sample.image))
            captions.append(sample.caption)
        } catch {
            progress(.skippedSample(stage: stage, index: i, message: "\(error)"))
        }
    }
    return (items, captions)
}

// MARK: - The loop

/// One stage's optimisation: AdamW over the trainable parameters, an EMA of the weights, warm-up + cosine learning
/// rate, gradient clipping, atomic checkpoints, a JSONL loss log, Ctrl-C handling and exact resume.
///
/// The stage supplies `loss(step)`, which builds its batch from the step's random streams and returns a scalar loss
/// recorded under `withGrad` (or nil to skip a step whose samples all failed to load).
final class TrainingLoop {
    let stage: Stage
    let model: Module
    let schedule: TrainingSchedule
    let checkpointURL: URL
    let logURL: URL
    let configJSON: String
    let optimizer: AdamW
    let ema: EMA
    private(set) var step = 0

    /// - Parameters:
    ///   - folder: where `checkpoint.safetensors` and `loss.jsonl` live (created if needed).
    ///   - configJSON: the stage configuration, stored in each checkpoint.
    init(stage: Stage, model: Module, schedule: TrainingSchedule, folder: URL, configJSON: String) throws {
        try schedule.validate(stage: stage)
        self.stage = stage
        self.model = model
        self.schedule = schedule
        self.configJSON = configJSON
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw TrainingError.io(path: folder.path, reason: "cannot create the checkpoint folder (\(error.localizedDescription))")
        }
        checkpointURL = folder.appendingPathComponent("checkpoint.safetensors")
        logURL = folder.appendingPathComponent("loss.jsonl")
        optimizer = AdamW(model, learningRate: schedule.learningRate, betas: (schedule.beta1, schedule.beta2),
                          eps: schedule.adamEpsilon, weightDecay: schedule.weightDecay)
        // diffusers' EMAModel ramp (1 + k)/(10 + k) capped at the decay: early averages are not dominated by the
        // random initialisation.
        ema = EMA(model, decay: schedule.emaDecay, schedule: .diffusers)
    }

    /// Restores model, EMA and optimizer from the stage checkpoint when `resume` is set and one exists.
    func restoreIfRequested(_ resume: Bool, progress: (TrainingEvent) -> Void) throws {
        guard resume, FileManager.default.fileExists(atPath: checkpointURL.path) else {
            if resume { progress(.message(stage: stage, text: "no checkpoint at \(checkpointURL.path); starting from step 0")) }
            try? FileManager.default.removeItem(at: logURL)
            return
        }
        let state = try Checkpoint.read(checkpointURL, stage: stage, model: model, ema: ema, optimizer: optimizer)
        step = state.step
        if state.configJSON != configJSON {
            progress(.message(stage: stage, text: "the configuration differs from the checkpoint's; continuing with the new one"))
        }
        truncateLog(after: step)
        progress(.message(stage: stage, text: "resumed from \(checkpointURL.path) at step \(step)"))
    }

    /// Runs steps until `schedule.steps` or Ctrl-C; afterwards the model holds the EMA weights.
    func run(progress: (TrainingEvent) -> Void, loss computeLoss: (Int) throws -> Tensor?) throws -> TrainingOutcome {
        let lrSchedule = schedule.learningRateSchedule
        let parameters = optimizer.parameters.map(\.tensor)
        let startStep = step
        let start = Date()
        var smoothed = Float.nan
        var recentRate = 0.0
        var lastTime = start
        var interrupted = false
        let log = try openLog()
        defer { try? log.close() }
        // What the steps' convolutions and products run at (recorded in each log line).
        let precision = Precision.differentiating ? Precision.current : .fp32

        while step < schedule.steps {
            if TrainingInterrupt.isRequested { interrupted = true; break }
            let lr = lrSchedule(step)
            optimizer.learningRate = lr
            guard let loss = try withGrad({ try computeLoss(step) }) else {
                throw TrainingError.noUsableSamples(stage: stage, step: step)
            }
            let value = loss.item
            guard value.isFinite else { throw TrainingError.nonFiniteLoss(stage: stage, step: step, loss: value) }
            loss.backward()
            let norm = schedule.gradientClip > 0 ? clipGradNorm(parameters, maxNorm: schedule.gradientClip) : 0
            optimizer.step()
            optimizer.zeroGrad()
            ema.update()
            step += 1

            let now = Date()
            let dt = max(now.timeIntervalSince(lastTime), 1e-9)
            lastTime = now
            recentRate = recentRate == 0 ? 1 / dt : 0.9 * recentRate + 0.1 / dt
            smoothed = smoothed.isNaN ? value : 0.98 * smoothed + 0.02 * value
            if step % schedule.logEvery == 0 || step == schedule.steps {
                let line = "{\"step\":\(step),\"loss\":\(value),\"smoothed_loss\":\(smoothed),\"lr\":\(lr),\"grad_norm\":\(norm),\"time\":\(now.timeIntervalSince1970),\"precision\":\"\(precision)\"}\n"
                log.write(Data(line.utf8))
            }
            progress(.step(TrainingProgress(stage: stage, step: step, totalSteps: schedule.steps, loss: value,
                                            smoothedLoss: smoothed, learningRate: lr, gradientNorm: norm,
                                            stepsPerSecond: recentRate,
                                            etaSeconds: Double(schedule.steps - step) / max(recentRate, 1e-9))))
            if step % schedule.checkpointEvery == 0 || step == schedule.steps { try saveCheckpoint(progress: progress) }
        }
        if interrupted && step > startStep && step % schedule.checkpointEvery != 0 { try saveCheckpoint(progress: progress) }
        if interrupted { progress(.message(stage: stage, text: "interrupted at step \(step); resume to continue")) }
        ema.copyToModel()
        let elapsed = Date().timeIntervalSince(start)
        return TrainingOutcome(stage: stage, completedSteps: step, totalSteps: schedule.steps, interrupted: interrupted,
                               finalLoss: smoothed, stepsPerSecond: elapsed > 0 ? Double(step - startStep) / elapsed : 0)
    }

    private func saveCheckpoint(progress: (TrainingEvent) -> Void) throws {
        try Checkpoint.write(checkpointURL, stage: stage, step: step, seed: schedule.seed, configJSON: configJSON,
                             model: model, ema: ema, optimizer: optimizer)
        progress(.checkpoint(stage: stage, step: step, path: checkpointURL.path))
    }

    private func openLog() throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        do {
            let handle = try FileHandle(forWritingTo: logURL)
            try handle.seekToEnd()
            return handle
        } catch {
            throw TrainingError.io(path: logURL.path, reason: "cannot open the loss log (\(error.localizedDescription))")
        }
    }

    /// Drops log lines of steps after `step`: they belong to a session whose weights were lost with Ctrl-C or a crash.
    private func truncateLog(after step: Int) {
        guard let text = try? String(contentsOf: logURL, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let range = line.range(of: "\"step\":"), let end = line[range.upperBound...].firstIndex(of: ",") else { return false }
            return (Int(line[range.upperBound..<end]) ?? Int.max) <= step
        }
        try? (kept.map { $0 + "\n" }.joined()).write(to: logURL, atomically: true, encoding: .utf8)
    }
}
