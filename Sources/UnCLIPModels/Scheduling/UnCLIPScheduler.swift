import Foundation
import UnCLIPTensor

/// diffusers' `UnCLIPScheduler`: the DDPM-style reverse step used by the prior, the decoder and the super-resolution
/// stages of unCLIP (spec §11), reproduced to the float32 operation.
///
/// All scalar coefficients are computed in Float with the same operations, in the same order, as PyTorch's 0-dim
/// float32 tensors, and the elementwise arithmetic follows diffusers' expression order. The one known difference:
/// PyTorch's CPU `sqrt` / `** 0.5` is not correctly rounded (up to ~0.7 ulp), while `squareRoot()` is, so a
/// coefficient can be 1 ulp away and a step result a few 1e-7 away from diffusers'.
public struct UnCLIPScheduler: Sendable {
    /// The configuration this scheduler was built from.
    public let config: UnCLIPSchedulerConfig
    /// βᵢ of the cosine schedule (computed in Double, stored as Float).
    public let betas: [Float]
    /// αᵢ = 1 − βᵢ in Float.
    public let alphas: [Float]
    /// ᾱᵢ = ∏ αⱼ (j ≤ i).
    public let alphasCumprod: [Float]
    /// Standard deviation of the initial noise (diffusers' `init_noise_sigma`).
    public let initNoiseSigma: Float = 1
    /// The timesteps of the sampling loop, largest first; all training timesteps until `setTimesteps` is called.
    public private(set) var timesteps: [Int]
    /// The step count given to `setTimesteps`, if any.
    public private(set) var numInferenceSteps: Int?

    /// Builds the training schedule of `config`.
    public init(config: UnCLIPSchedulerConfig = UnCLIPSchedulerConfig()) throws {
        guard config.numTrainTimesteps >= 2 else {
            throw SchedulerError.invalidOption(name: "num_train_timesteps", value: String(config.numTrainTimesteps), allowed: ["an integer ≥ 2"])
        }
        self.config = config
        let betas = Self.squaredCosineBetas(config.numTrainTimesteps)
        self.betas = betas
        self.alphas = betas.map { 1 - $0 }
        // Matches PyTorch's CPU cumprod on float32: the running product is kept in double and each partial product
        // is rounded to float32 only when stored (a float32 running product differs in 991 of 1000 entries).
        var product = 1.0
        self.alphasCumprod = alphas.map { alpha in
            product *= Double(alpha)
            return Float(product)
        }
        self.timesteps = Array((0..<config.numTrainTimesteps).reversed())
    }

    /// Loads `scheduler_config.json` and builds the schedule.
    public init(configURL: URL) throws {
        try self.init(config: UnCLIPSchedulerConfig.load(from: configURL))
    }

    /// βᵢ = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999) with ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), in Double, rounded to Float.
    static func squaredCosineBetas(_ count: Int) -> [Float] {
        // Matches diffusers betas_for_alpha_bar: the same Double expression order, then torch.tensor(..., float32).
        func alphaBar(_ t: Double) -> Double {
            let c = cos((t + 0.008) / 1.008 * Double.pi / 2)
            return c * c
        }
        return (0..<count).map { i in
            let t1 = Double(i) / Double(count), t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
        }
    }

    // MARK: Timesteps

    /// The `n` sampling timesteps, largest first: round(k · (T − 1)/(n − 1)) for k = n − 1 … 0.
    public static func timesteps(numInferenceSteps n: Int, numTrainTimesteps: Int) throws -> [Int] {
        guard n >= 2 && n <= numTrainTimesteps else { throw SchedulerError.invalidStepCount(n, numTrainTimesteps: numTrainTimesteps) }
        let stepRatio = Double(numTrainTimesteps - 1) / Double(n - 1)
        // Matches NumPy's round: halves go to even (166.5 → 166, 499.5 → 500).
        return (0..<n).reversed().map { k in Int((Double(k) * stepRatio).rounded(.toNearestOrEven)) }
    }

    /// Sets `timesteps` for a sampling loop of `n` steps (diffusers' `set_timesteps`).
    public mutating func setTimesteps(_ n: Int) throws {
        timesteps = try Self.timesteps(numInferenceSteps: n, numTrainTimesteps: config.numTrainTimesteps)
        numInferenceSteps = n
    }

    /// The timestep after `timesteps[index]` in the loop, or nil at the last step (what the pipelines pass as
    /// `prev_timestep`).
    public func previousTimestep(afterIndex index: Int) -> Int? {
        index + 1 < timesteps.count ? timesteps[index + 1] : nil
    }

    /// The identity: this scheduler does not scale the model input.
    public func scaleModelInput(_ sample: Tensor, timestep: Int) -> Tensor { sample }

    // MARK: Step

    /// The float32 scalars of one step from `t` to `p` (spec §11.3).
    public struct StepCoefficients: Equatable, Sendable {
        /// ā_t.
        public var alphaProdT: Float
        /// ā_p (1 when p < 0).
        public var alphaProdTPrev: Float
        /// b_t = 1 − ā_t.
        public var betaProdT: Float
        /// b_p = 1 − ā_p.
        public var betaProdTPrev: Float
        /// β of this (possibly respaced) step.
        public var beta: Float
        /// α = 1 − β.
        public var alpha: Float
        /// √ā_p·β/b_t, the coefficient of x̂₀ in μ.
        public var predOriginalSampleCoeff: Float
        /// √α·b_p/b_t, the coefficient of x_t in μ.
        public var currentSampleCoeff: Float
        /// Posterior variance (b_p/b_t)·β.
        public var variance: Float
        /// σ of fixed_small_log: exp(½·ln(max(variance, 1e-20))).
        public var fixedSmallLogStd: Float
    }

    /// The coefficients of the step from `timestep` to `prevTimestep` (nil means `timestep − 1`).
    public func coefficients(timestep t: Int, prevTimestep: Int? = nil) throws -> StepCoefficients {
        let count = config.numTrainTimesteps
        guard t >= 0 && t < count else { throw SchedulerError.timestepOutOfRange(name: "timestep", value: t, validRange: "0 ..< \(count)") }
        let p = prevTimestep ?? t - 1
        guard p >= -1 && p < count else {
            throw SchedulerError.timestepOutOfRange(name: "prev_timestep", value: p, validRange: "-1 ..< \(count)")
        }
        // Matches diffusers UnCLIPScheduler.step: every quantity is a 0-dim float32 tensor, `x ** 0.5` is sqrtf.
        let alphaProdT = alphasCumprod[t]
        let alphaProdTPrev: Float = p >= 0 ? alphasCumprod[p] : 1
        let betaProdT = 1 - alphaProdT
        let betaProdTPrev = 1 - alphaProdTPrev
        let beta: Float, alpha: Float
        if p == t - 1 {
            beta = betas[t]
            alpha = alphas[t]
        } else {
            beta = 1 - alphaProdT / alphaProdTPrev
            alpha = 1 - beta
        }
        let variance = betaProdTPrev / betaProdT * beta
        return StepCoefficients(
            alphaProdT: alphaProdT, alphaProdTPrev: alphaProdTPrev, betaProdT: betaProdT, betaProdTPrev: betaProdTPrev,
            beta: beta, alpha: alpha,
            predOriginalSampleCoeff: alphaProdTPrev.squareRoot() * beta / betaProdT,
            currentSampleCoeff: alpha.squareRoot() * betaProdTPrev / betaProdT,
            variance: variance,
            fixedSmallLogStd: Foundation.exp(0.5 * Foundation.log(max(variance, 1e-20))))
    }

    /// Whether `step` will split a model output of this shape into (prediction, variance channels).
    func splitsVariance(modelOutputShape: [Int], sampleShape: [Int]) -> Bool {
        config.varianceType == .learnedRange && modelOutputShape.count >= 2 && sampleShape.count >= 2
            && modelOutputShape[1] == 2 * sampleShape[1]
    }

    /// The shape of the noise `step` needs: the model output's after the learned-variance split ([B, C, …] of the
    /// sample for the decoder; the model output's shape otherwise).
    public func noiseShape(modelOutputShape: [Int], sampleShape: [Int]) -> [Int] {
        guard splitsVariance(modelOutputShape: modelOutputShape, sampleShape: sampleShape) else { return modelOutputShape }
        var shape = modelOutputShape
        shape[1] = sampleShape[1]
        return shape
    }

    /// One reverse step x_t → x_p (diffusers' `UnCLIPScheduler.step(...).prev_sample`).
    ///
    /// - Parameters:
    ///   - modelOutput: ε or x̂₀ with the sample's shape; for learned_range, [B, 2C, …] with the variance channels
    ///     v ∈ [−1, 1] in the second half of axis 1.
    ///   - timestep: t.
    ///   - sample: x_t.
    ///   - prevTimestep: p, the next timestep of the loop; nil means t − 1 (the last step passes nil, p = −1).
    ///   - noise: ε ~ N(0, I) of `noiseShape(...)`; required when t > 0, ignored at t = 0.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, prevTimestep: Int? = nil,
                     noise: Tensor? = nil) throws -> Tensor {
        let c = try coefficients(timestep: t, prevTimestep: prevTimestep)
        let split = splitsVariance(modelOutputShape: modelOutput.shape, sampleShape: sample.shape)
        if !split && modelOutput.shape != sample.shape {
            throw SchedulerError.shapeMismatch("model output \(modelOutput.shape) does not match sample \(sample.shape)"
                + (config.varianceType == .learnedRange ? " or have twice its channels (learned_range)" : ""))
        }
        if config.varianceType == .learnedRange && !split && t > 0 {
            throw SchedulerError.shapeMismatch("learned_range needs the variance channels: model output with 2×\(sample.shape.count >= 2 ? sample.shape[1] : 0) channels on axis 1, got \(modelOutput.shape)")
        }
        let noiseShape = noiseShape(modelOutputShape: modelOutput.shape, sampleShape: sample.shape)
        var noisePointer: UnsafeMutablePointer<Float>?
        if t > 0 {
            guard let noise else { throw SchedulerError.missingNoise(timestep: t, expectedShape: noiseShape) }
            guard noise.shape == noiseShape else {
                throw SchedulerError.shapeMismatch("noise \(noise.shape) should have shape \(noiseShape)")
            }
            noisePointer = noise.data
        }

        // [B, C, R] view of the sample; the model output is [B, k·C, R] with k = 2 when split.
        let batch = sample.shape.first ?? 1
        let rowCount = sample.count / max(batch, 1)
        let outputRow = split ? 2 * rowCount : rowCount
        let out = Tensor(uninitializedShape: sample.shape)
        let x = sample.data, m = modelOutput.data, o = out.data

        let sqrtBetaProdT = c.betaProdT.squareRoot(), sqrtAlphaProdT = c.alphaProdT.squareRoot()
        let epsilon = config.predictionType == .epsilon
        let clip = config.clipSample, range = Float(config.clipSampleRange)
        let c0 = c.predOriginalSampleCoeff, c1 = c.currentSampleCoeff
        let learned = config.varianceType == .learnedRange
        // learned_range interpolates between these logs; fixed_small_log uses one σ for all elements.
        let minLog = Foundation.log(c.variance), maxLog = Foundation.log(c.beta)
        let sigma = c.fixedSmallLogStd

        for b in 0..<batch {
            for i in 0..<rowCount {
                let si = b * rowCount + i
                let mi = b * outputRow + i
                let xt = x[si], output = m[mi]
                // Matches diffusers: (sample − b_t ** 0.5 · ε) / ā_t ** 0.5, each operation rounded to float32.
                var x0 = epsilon ? (xt - sqrtBetaProdT * output) / sqrtAlphaProdT : output
                if clip { x0 = min(max(x0, -range), range) }
                var value = c0 * x0 + c1 * xt
                if let n = noisePointer {
                    let std: Float
                    if learned {
                        // v sits in the second half of axis 1: channel C + c of the same batch row.
                        let v = m[mi + rowCount]
                        let frac = (v + 1) / 2
                        let logVariance = frac * maxLog + (1 - frac) * minLog
                        std = Foundation.exp(0.5 * logVariance)
                    } else {
                        std = sigma
                    }
                    value = value + std * n[si]
                }
                o[si] = value
            }
        }
        return out
    }
}
