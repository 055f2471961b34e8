import UnCLIPTensor

/// A reverse-diffusion rule over a fixed list of timesteps: what `DenoisingLoop` walks.
///
/// Conformers: `UnCLIPScheduler` (diffusers' DDPM-style step, every unCLIP stage), `DDIMSampling` (DDIM with η,
/// the manipulations' decoder pass) and `DDIMInversion` (the same path climbed backwards, with fixed-point refinements).
public protocol DiffusionSampler {
    /// The model's timesteps, in loop order.
    var timesteps: [Int] { get }

    /// The shape of the Gaussian noise step `index` adds, or nil when it adds none.
    func noiseShape(step index: Int, modelOutputShape: [Int], sampleShape: [Int]) -> [Int]?

    /// The sample after step `index`, from the model's (guided) output at (`sample`, `timesteps[index]`).
    func step(_ index: Int, modelOutput: Tensor, sample: Tensor, noise: Tensor?) throws -> Tensor

    /// Fixed-point refinements of every step: an implicit step is re-solved this many times with the model evaluated
    /// at its current estimate. 0 for explicit samplers.
    var refinements: Int { get }

    /// Step `index` re-solved from `sample` with the model output evaluated at `estimate` (its previous result).
    func refine(_ index: Int, modelOutput: Tensor, sample: Tensor, estimate: Tensor) throws -> Tensor
}

extension DiffusionSampler {
    public var refinements: Int { 0 }

    public func refine(_ index: Int, modelOutput: Tensor, sample: Tensor, estimate: Tensor) throws -> Tensor {
        try step(index, modelOutput: modelOutput, sample: sample, noise: nil)
    }
}

/// A sampler whose sample before each step is, in distribution, the forward process q(x_t | x_0) at a known noise
/// level: what RePaint (`DenoisingLoop.inpaint`) needs to noise the known region to the sample's level and to jump back
/// up the schedule.
public protocol ForwardProcessSampler: DiffusionSampler {
    /// ᾱ of the sample before step `index` (x = √ᾱ·x₀ + √(1 − ᾱ)·ε); `index == timesteps.count` is after the last
    /// step, the clean image (1).
    func alphaBar(beforeStep index: Int) -> Float
}

extension ForwardProcessSampler {
    /// A sample of q(x_k | x₀) for the level before step `k`: √ᾱ_k·x₀ + √(1 − ᾱ_k)·ε (x₀ itself when ᾱ_k = 1).
    public func noised(_ x0: Tensor, beforeStep k: Int, noise: Tensor) -> Tensor {
        let a = alphaBar(beforeStep: k)
        return x0 * a.squareRoot() + noise * (1 - a).squareRoot()
    }

    /// A sample of q(x_a | x_b) for the level before step `a` given one before step `b` > `a` (a noisier level):
    /// √(ᾱ_a/ᾱ_b)·x_b + √(1 − ᾱ_a/ᾱ_b)·ε, the forward process climbing from b back to a (RePaint's jump).
    public func renoised(_ x: Tensor, from b: Int, to a: Int, noise: Tensor) -> Tensor {
        precondition(a < b, "renoised: step \(a) is not before step \(b)")
        let ratio = alphaBar(beforeStep: a) / alphaBar(beforeStep: b)
        return x * ratio.squareRoot() + noise * (1 - ratio).squareRoot()
    }
}

extension UnCLIPScheduler: ForwardProcessSampler {
    /// ᾱ at `timesteps[index]`; 1 after the last step (diffusers' ᾱ_prev of the last step).
    public func alphaBar(beforeStep index: Int) -> Float {
        index < timesteps.count ? alphasCumprod[timesteps[index]] : 1
    }
}

extension UnCLIPScheduler: DiffusionSampler {
    public func noiseShape(step index: Int, modelOutputShape: [Int], sampleShape: [Int]) -> [Int]? {
        timesteps[index] > 0 ? noiseShape(modelOutputShape: modelOutputShape, sampleShape: sampleShape) : nil
    }

    public func step(_ index: Int, modelOutput: Tensor, sample: Tensor, noise: Tensor?) throws -> Tensor {
        try step(modelOutput: modelOutput, timestep: timesteps[index], sample: sample,
                 prevTimestep: previousTimestep(afterIndex: index), noise: noise)
    }
}
