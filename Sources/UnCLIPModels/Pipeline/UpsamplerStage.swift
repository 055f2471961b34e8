import UnCLIPTensor

/// One stage of the upsampler cascade (paper §2.1: diffusion upsamplers conditioned on the smaller image).
///
/// Karlo's pair is one stage: `super_res_first` runs every step but the last, `super_res_last` only the last
/// (diffusers' rule); a stage without a `last` UNet runs `first` throughout. Each UNet sees the noisy sample
/// concatenated with the antialiased-bicubic upscaled input, at its configured size.
public struct Upsampler {
    /// `.superResolution(k)`: its noise stream, progress and traced names.
    public let stage: Stage
    public let first: Component<UNet2DModel>
    public let last: Component<UNet2DModel>?
    public let scheduler: UnCLIPScheduler
    /// The side of its output images (its UNets' `sample_size`), known before they load.
    public let size: Int

    public init(stage: Stage, first: Component<UNet2DModel>, last: Component<UNet2DModel>?, scheduler: UnCLIPScheduler, size: Int) {
        self.stage = stage
        self.first = first
        self.last = last
        self.scheduler = scheduler
        self.size = size
    }

    /// A stage from UNets given in code.
    public init(index: Int = 0, first: UNet2DModel, last: UNet2DModel? = nil, scheduler: UnCLIPScheduler) {
        let stage = Stage.superResolution(index)
        self.init(stage: stage, first: Component(first, name: "\(stage.key)_first"),
                  last: last.map { Component($0, name: "\(stage.key)_last") }, scheduler: scheduler, size: first.config.sampleSize)
    }

    /// The low-resolution images [B, C, h, w] in [−1, 1] → the stage's output [B, C, H, W].
    ///
    /// `use` runs a UNet's component (the pipeline loads and releases it). With `known` (the known region at a sample
    /// size), the stage inpaints: RePaint's known-region replacement after every step and the jumps of `schedule`
    /// (`DenoisingLoop.inpaint`); without it the stage samples as diffusers does.
    func run(_ small: Tensor, steps: Int, noise: inout some NoiseSource, observer: RunObserver,
             known: ((Int) throws -> KnownRegion)? = nil, schedule: ResamplingSchedule = .none,
             use: (Component<UNet2DModel>, (UNet2DModel) throws -> Void) throws -> Void) throws -> Tensor {
        var scheduler = self.scheduler
        try scheduler.setTimesteps(steps)
        var loop = DenoisingLoop(scheduler, stage: stage, observer: observer)
        var x: Tensor? = nil, upscaled: Tensor? = nil, region: KnownRegion? = nil
        let upscaledName = stage == .superResolution(0) ? "image_upscaled" : "\(stage.key).image_upscaled"
        func denoise(_ unet: UNet2DModel, _ indices: Range<Int>) throws {
            let size = unet.config.sampleSize
            if upscaled == nil {
                // Matches diffusers: antialiased bicubic (a = −0.5), align_corners = False.
                upscaled = small.resizedBicubicAntialiased(height: size, width: size)
                observer.emit(upscaledName, upscaled!)
            }
            if x == nil {
                x = try loop.initialLatent([small.shape[0], small.shape[1], size, size], noise: &noise) * scheduler.initNoiseSigma
            }
            func model(_ input: Tensor, _ t: Int) -> Tensor { unet(Tensor.concat([input, upscaled!], axis: 1), timestep: t) }
            if let known {
                if region == nil { region = try known(size) }
                x = try loop.inpaint(from: x!, steps: indices, known: region!, schedule: schedule, noise: &noise, model: model)
            } else {
                x = try loop.run(from: x!, steps: indices, noise: &noise, model: model)
            }
        }
        let count = scheduler.timesteps.count
        let firstCount = last == nil ? count : count - 1
        try use(first) { try denoise($0, 0..<firstCount) }
        if let last { try use(last) { try denoise($0, firstCount..<count) } }
        return x!
    }
}
