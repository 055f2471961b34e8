import Foundation

/// Why a scheduler configuration or a scheduler call was rejected.
public enum SchedulerError: Error, CustomStringConvertible {
    /// A configuration option holds a value this port does not implement.
    case invalidOption(name: String, value: String, allowed: [String])
    /// A configuration file could not be read or decoded.
    case unreadableConfig(file: String, detail: String)
    /// `setTimesteps` needs at least two steps (diffusers divides by n − 1).
    case invalidStepCount(Int, numTrainTimesteps: Int)
    /// A timestep outside 0 ..< num_train_timesteps (or a previous timestep outside −1 ..< t).
    case timestepOutOfRange(name: String, value: Int, validRange: String)
    /// Model output, sample and noise shapes do not fit together.
    case shapeMismatch(String)
    /// A step with t > 0 adds noise, so the caller must pass it.
    case missingNoise(timestep: Int, expectedShape: [Int])

    public var description: String {
        switch self {
        case let .invalidOption(name, value, allowed):
            return "scheduler option \(name) = \"\(value)\" is not supported; allowed: \(allowed.joined(separator: ", "))"
        case let .unreadableConfig(file, detail):
            return "cannot read scheduler config \(file): \(detail)"
        case let .invalidStepCount(n, train):
            return "number of inference steps must be in 2 … \(train), got \(n)"
        case let .timestepOutOfRange(name, value, range):
            return "\(name) \(value) is outside \(range)"
        case let .shapeMismatch(detail):
            return "scheduler step: \(detail)"
        case let .missingNoise(t, shape):
            return "scheduler step at t = \(t) > 0 adds noise; pass noise of shape \(shape)"
        }
    }
}

/// `scheduler_config.json` of diffusers' `UnCLIPScheduler`; every field has diffusers' constructor default.
///
/// Extra keys (`_class_name`, `_diffusers_version`, …) are ignored. Unsupported values throw
/// `SchedulerError.invalidOption` naming the option and its allowed values.
public struct UnCLIPSchedulerConfig: Codable, Equatable, Sendable {
    /// How the variance of each reverse step is chosen.
    public enum VarianceType: String, Codable, CaseIterable, Sendable {
        /// σ² = posterior variance β̃ (clamped at 1e-20, taken through log/exp).
        case fixedSmallLog = "fixed_small_log"
        /// The model predicts v ∈ [−1, 1] and ln σ² interpolates between ln β̃ and ln β.
        case learnedRange = "learned_range"
    }

    /// What the model predicts.
    public enum PredictionType: String, Codable, CaseIterable, Sendable {
        case epsilon
        case sample
    }

    /// The training noise schedule; unCLIP only has the cosine one.
    public enum BetaSchedule: String, Codable, CaseIterable, Sendable {
        case squaredcosCapV2 = "squaredcos_cap_v2"
    }

    public var numTrainTimesteps: Int = 1000
    public var varianceType: VarianceType = .fixedSmallLog
    public var clipSample: Bool = true
    public var clipSampleRange: Double = 1.0
    public var predictionType: PredictionType = .epsilon
    public var betaSchedule: BetaSchedule = .squaredcosCapV2

    enum CodingKeys: String, CodingKey {
        case numTrainTimesteps = "num_train_timesteps"
        case varianceType = "variance_type"
        case clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range"
        case predictionType = "prediction_type"
        case betaSchedule = "beta_schedule"
    }

    public init(numTrainTimesteps: Int = 1000, varianceType: VarianceType = .fixedSmallLog, clipSample: Bool = true,
                clipSampleRange: Double = 1.0, predictionType: PredictionType = .epsilon,
                betaSchedule: BetaSchedule = .squaredcosCapV2) {
        self.numTrainTimesteps = numTrainTimesteps
        self.varianceType = varianceType
        self.clipSample = clipSample
        self.clipSampleRange = clipSampleRange
        self.predictionType = predictionType
        self.betaSchedule = betaSchedule
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func option<E: RawRepresentable & CaseIterable>(_ key: CodingKeys, _ fallback: E) throws -> E where E.RawValue == String {
            guard let raw = try c.decodeIfPresent(String.self, forKey: key) else { return fallback }
            guard let value = E(rawValue: raw) else {
                throw SchedulerError.invalidOption(name: key.rawValue, value: raw, allowed: E.allCases.map(\.rawValue))
            }
            return value
        }
        numTrainTimesteps = try c.decodeIfPresent(Int.self, forKey: .numTrainTimesteps) ?? 1000
        varianceType = try option(.varianceType, VarianceType.fixedSmallLog)
        clipSample = try c.decodeIfPresent(Bool.self, forKey: .clipSample) ?? true
        clipSampleRange = try c.decodeIfPresent(Double.self, forKey: .clipSampleRange) ?? 1.0
        predictionType = try option(.predictionType, PredictionType.epsilon)
        betaSchedule = try option(.betaSchedule, BetaSchedule.squaredcosCapV2)
        if numTrainTimesteps < 2 || numTrainTimesteps > ConfigurationLimits.trainTimesteps {
            throw SchedulerError.invalidOption(name: "num_train_timesteps", value: String(numTrainTimesteps),
                                               allowed: ["an integer in 2 … \(ConfigurationLimits.trainTimesteps)"])
        }
        if !(clipSampleRange.isFinite && clipSampleRange > 0) {
            throw SchedulerError.invalidOption(name: "clip_sample_range", value: String(clipSampleRange), allowed: ["a finite number > 0"])
        }
    }

    /// Reads a diffusers `scheduler_config.json`.
    public static func load(from url: URL) throws -> UnCLIPSchedulerConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SchedulerError.unreadableConfig(file: url.path, detail: error.localizedDescription)
        }
        do { return try JSONDecoder().decode(UnCLIPSchedulerConfig.self, from: data) } catch let error as SchedulerError {
            throw error
        } catch {
            throw SchedulerError.unreadableConfig(file: url.path, detail: "\(error)")
        }
    }

    /// Karlo's prior scheduler: x̂₀ prediction clamped to ±5 (diffusers' value; the original Karlo used ±10).
    public static let karloPrior = UnCLIPSchedulerConfig(varianceType: .fixedSmallLog, clipSampleRange: 5.0, predictionType: .sample)
    /// Karlo's decoder scheduler: ε prediction with learned variance.
    public static let karloDecoder = UnCLIPSchedulerConfig(varianceType: .learnedRange, clipSampleRange: 1.0, predictionType: .epsilon)
    /// Karlo's super-resolution scheduler.
    public static let karloSuperRes = UnCLIPSchedulerConfig(varianceType: .fixedSmallLog, clipSampleRange: 1.0, predictionType: .epsilon)
}
