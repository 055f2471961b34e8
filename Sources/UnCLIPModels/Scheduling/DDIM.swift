import Foundation
import UnCLIPTensor

/// DDIM (Song, Meng & Ermon 2021) over a model's training schedule: deterministic sampling (η = 0), stochastic
/// sampling (η > 0) and inversion, as the unCLIP paper uses them for the decoder (§3: variations and interpolations
/// start from the DDIM-inverted x_T of an image).
///
/// The timesteps are the DDIM paper's evenly spaced ones, t_k = k·T/n for k = 0 … n − 1 (0, 20, …, 980 for n = 50).
/// The largest, 980 in that example, keeps ᾱ ≈ 1e-3 rather than the cosine schedule's ≈ 0 at 999: an inverted x_T
/// still carries a trace of the image there, which is what lets η = 0 decoding give it back.
///
/// No x̂₀ clipping: clipping is not invertible, and inversion followed by η = 0 sampling must retrace one path.
public struct DDIMSampler: Sendable {
    /// ᾱ of the training schedule.
    public let alphasCumprod: [Float]
    /// What the model predicts.
    public let predictionType: UnCLIPSchedulerConfig.PredictionType
    /// The sampling timesteps, increasing (t_0 = 0 first).
    public let timesteps: [Int]

    /// A sampler of `steps` steps over `scheduler`'s training schedule and prediction type, covering the first
    /// `depth` of it (1: up to t = 980 for 50 steps; 0.7: up to t ≈ 686, so x_T keeps more of the image).
    public init(scheduler: UnCLIPScheduler, steps: Int, depth: Double = 1) throws {
        let count = scheduler.config.numTrainTimesteps
        guard steps >= 1 && steps <= count else { throw SchedulerError.invalidStepCount(steps, numTrainTimesteps: count) }
        guard depth > 0 && depth <= 1 else {
            throw SchedulerError.invalidOption(name: "depth", value: "\(depth)", allowed: ["a number in (0, 1]"])
        }
        alphasCumprod = scheduler.alphasCumprod
        predictionType = scheduler.config.predictionType
        let span = Double(count) * depth
        timesteps = (0..<steps).map { Int((Double($0) * span / Double(steps)).rounded(.down)) }
    }

    /// ᾱ at timestep t; t = −1 is the clean image (ᾱ = 1).
    public func alphaBar(_ t: Int) -> Float { t >= 0 ? alphasCumprod[t] : 1 }

    /// (x̂₀, ε̂) from the model output at (x_t, t): one is the output, the other follows from x_t = √ᾱ·x₀ + √(1−ᾱ)·ε.
    public func prediction(_ output: Tensor, sample x: Tensor, timestep t: Int) -> (x0: Tensor, epsilon: Tensor) {
        let a = alphaBar(t), s = (1 - a).squareRoot(), r = a.squareRoot()
        switch predictionType {
        case .epsilon: return ((x - output * s) / r, output)
        case .sample: return (output, (x - output * r) / s)
        }
    }

    /// One DDIM step x_t → x_p (p < t; p = −1 returns x̂₀):
    /// x_p = √ᾱ_p·x̂₀ + √(1 − ᾱ_p − σ²)·ε̂ + σ·z, σ = η·√((1 − ᾱ_p)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_p).
    public func step(output: Tensor, timestep t: Int, sample x: Tensor, to p: Int, eta: Float, noise: Tensor?) -> Tensor {
        let (x0, epsilon) = prediction(output, sample: x, timestep: t)
        let at = alphaBar(t), ap = alphaBar(p)
        let sigma = eta * ((1 - ap) / (1 - at)).squareRoot() * max(0, 1 - at / ap).squareRoot()
        var next = x0 * ap.squareRoot() + epsilon * max(0, 1 - ap - sigma * sigma).squareRoot()
        if sigma > 0, let noise { next = next + noise * sigma }
        return next
    }

    /// One inversion step x_p → x_t (t > p): the η = 0 step run backwards. Its exact inverse needs the model at the
    /// unknown (x_t, t); `output` is the model evaluated at (`evaluatedAt`, t) instead — x_p itself in plain DDIM
    /// inversion (exact as the steps shrink), or the previous estimate of x_t in a fixed-point refinement.
    ///
    /// The output is read as ε̂ at timestep t (an x̂₀ model's output converted with ᾱ_t, i.e. the equivalent ε model),
    /// x̂₀ then follows from x_p itself, so the first step from the clean image (p = −1) keeps x̂₀ = x exactly.
    public func invertStep(output: Tensor, timestep t: Int, sample x: Tensor, from p: Int, evaluatedAt: Tensor? = nil) -> Tensor {
        let epsilon = prediction(output, sample: evaluatedAt ?? x, timestep: t).epsilon
        let ap = alphaBar(p), at = alphaBar(t)
        let x0 = p >= 0 ? (x - epsilon * (1 - ap).squareRoot()) / ap.squareRoot() : x
        return x0 * at.squareRoot() + epsilon * (1 - at).squareRoot()
    }
}

/// The prediction channels of a model output: a learned variance (the decoder's second half of axis 1) is not
/// used by DDIM.
private func predictionChannels(_ output: Tensor, like sample: Tensor) -> Tensor {
    let c = sample.shape[1]
    return output.shape[1] == c ? output : output.split(sizes: [c, output.shape[1] - c], axis: 1)[0]
}

/// DDIM sampling with η over a `DDIMSampler`'s timesteps, largest first, down to the clean image.
public struct DDIMSampling: DiffusionSampler {
    public let ddim: DDIMSampler
    public let eta: Float
    public let timesteps: [Int]

    public init(_ ddim: DDIMSampler, eta: Float) {
        self.ddim = ddim
        self.eta = eta
        timesteps = ddim.timesteps.reversed()
    }

    /// The timestep step `index` goes to (−1: the clean image).
    func target(_ index: Int) -> Int { index + 1 < timesteps.count ? timesteps[index + 1] : -1 }

    public func noiseShape(step index: Int, modelOutputShape: [Int], sampleShape: [Int]) -> [Int]? {
        eta > 0 && target(index) >= 0 ? sampleShape : nil
    }

    public func step(_ index: Int, modelOutput: Tensor, sample: Tensor, noise: Tensor?) throws -> Tensor {
        ddim.step(output: predictionChannels(modelOutput, like: sample), timestep: timesteps[index], sample: sample,
                  to: target(index), eta: eta, noise: noise)
    }
}

/// DDIM inversion: the η = 0 path climbed from the clean image to x_T, each step re-solved `refinements` times at
/// the model's output on the current estimate (the fixed point is the exact inverse of the η = 0 step).
public struct DDIMInversion: DiffusionSampler {
    public let ddim: DDIMSampler
    public let refinements: Int
    public var timesteps: [Int] { ddim.timesteps }

    public init(_ ddim: DDIMSampler, refinements: Int) {
        self.ddim = ddim
        self.refinements = refinements
    }

    /// The timestep step `index` starts from (−1: the clean image).
    func source(_ index: Int) -> Int { index > 0 ? timesteps[index - 1] : -1 }

    public func noiseShape(step index: Int, modelOutputShape: [Int], sampleShape: [Int]) -> [Int]? { nil }

    public func step(_ index: Int, modelOutput: Tensor, sample: Tensor, noise: Tensor?) throws -> Tensor {
        ddim.invertStep(output: predictionChannels(modelOutput, like: sample), timestep: timesteps[index], sample: sample,
                        from: source(index))
    }

    public func refine(_ index: Int, modelOutput: Tensor, sample: Tensor, estimate: Tensor) throws -> Tensor {
        ddim.invertStep(output: predictionChannels(modelOutput, like: sample), timestep: timesteps[index], sample: sample,
                        from: source(index), evaluatedAt: estimate)
    }
}
