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

extension UnCLIPScheduler: DiffusionSampler {
    public func noiseShape(step index: Int, modelOutputShape: [Int], sampleShape: [Int]) -> [Int]? {
        timesteps[index] > 0 ? noiseShape(modelOutputShape: modelOutputShape, sampleShape: sampleShape) : nil
    }

    public func step(_ index: Int, modelOutput: Tensor, sample: Tensor, noise: Tensor?) throws -> Tensor {
        try step(modelOutput: modelOutput, timestep: timesteps[index], sample: sample,
                 prevTimestep: previousTimestep(afterIndex: index), noise: noise)
    }
}
