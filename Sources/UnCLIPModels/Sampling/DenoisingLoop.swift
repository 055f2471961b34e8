import UnCLIPTensor

/// What a run reports: every intermediate tensor to `trace` (names as in the parity fixtures) and every step to
/// `progress`, which cancels the run by returning false. A run inside a cancelled task stops at its next step too.
public struct RunObserver {
    public var trace: ((String, Tensor) -> Void)?
    public var progress: ((PipelineProgress) -> Bool)?

    public init(trace: ((String, Tensor) -> Void)? = nil, progress: ((PipelineProgress) -> Bool)? = nil) {
        self.trace = trace
        self.progress = progress
    }

    /// Records an intermediate (computed only when tracing).
    public func emit(_ name: @autoclosure () -> String, _ tensor: @autoclosure () -> Tensor) {
        if let trace { trace(name(), tensor()) }
    }

    /// Reports step `step` of `count`; throws `PipelineCancelled` when asked to stop.
    public func report(_ stage: Stage, step: Int, of count: Int) throws {
        if Task.isCancelled { throw PipelineCancelled() }
        if let progress, !progress(PipelineProgress(stage: stage, step: step, stepCount: count)) { throw PipelineCancelled() }
    }
}

/// The one denoising loop of the project: every stage and manipulation samples through it.
///
/// Each step evaluates the model on the (guidance-doubled) sample, combines the halves, draws the step's noise from
/// the stage's stream, steps the sampler (re-solving implicit steps), traces and reports. Noise draws are numbered
/// within the stage in the order diffusers draws them: 0 is the initial latent, then one per step that adds noise.
public struct DenoisingLoop<Sampler: DiffusionSampler> {
    public var sampler: Sampler
    /// The stage the noise is drawn for and progress reported as.
    public var stage: Stage
    public var guidance: Guidance
    /// The prefix of the traced names (`prior.step.3.output`, `decoder.latents.4`, `ddim.latents.2`, …).
    public var traceName: String
    public var observer: RunObserver
    /// The index of the stage's next noise draw.
    public var nextDraw = 1
    /// The indices of the next draws of the stage's auxiliary streams (inpainting: `inpaint(...)`), from 0.
    public var nextAuxiliaryDraw: [AuxiliaryNoise: Int] = [:]

    public init(_ sampler: Sampler, stage: Stage, guidance: Guidance = .off, traceName: String? = nil,
                observer: RunObserver = RunObserver()) {
        self.sampler = sampler
        self.stage = stage
        self.guidance = guidance
        self.traceName = traceName ?? stage.key
        self.observer = observer
    }

    /// The initial latent x_T ~ N(0, I) of `shape`: draw 0 of the stage.
    public func initialLatent(_ shape: [Int], noise: inout some NoiseSource) throws -> Tensor {
        try noise.noise(stage: stage, index: 0, shape: shape)
    }

    /// Runs steps `steps` (all of them by default) from `x` with `model(input, t)`, the raw model output.
    public mutating func run(from x: Tensor, steps: Range<Int>? = nil, noise: inout some NoiseSource,
                             model: (Tensor, Int) throws -> Tensor) throws -> Tensor {
        let timesteps = sampler.timesteps
        var x = x
        for i in steps ?? timesteps.indices {
            x = try step(i, from: x, noise: &noise, model: model)
            try observer.report(stage, step: i + 1, of: timesteps.count)
        }
        return x
    }

    /// Step `i` from `x`: the model (guided), the step's noise draw, the sampler's step and its refinements, traced.
    mutating func step(_ i: Int, from x: Tensor, noise: inout some NoiseSource,
                       model: (Tensor, Int) throws -> Tensor) throws -> Tensor {
        let t = sampler.timesteps[i]
        func predict(_ at: Tensor) throws -> Tensor {
            let input = guidance.modelInput(at)
            observer.emit("\(traceName).step.\(i).input", input)
            let output = try model(input, t)
            observer.emit("\(traceName).step.\(i).output", output)
            let guided = guidance.combine(output)
            observer.emit("\(traceName).step.\(i).model_output", guided)
            return guided
        }
        let output = try predict(x)
        var stepNoise: Tensor? = nil
        if let shape = sampler.noiseShape(step: i, modelOutputShape: output.shape, sampleShape: x.shape) {
            stepNoise = try noise.noise(stage: stage, index: nextDraw, shape: shape)
            nextDraw += 1
        }
        var next = try sampler.step(i, modelOutput: output, sample: x, noise: stepNoise)
        for _ in 0..<sampler.refinements {
            next = try sampler.refine(i, modelOutput: try predict(next), sample: x, estimate: next)
        }
        observer.emit("\(traceName).latents.\(i + 1)", next)
        return next
    }
}
