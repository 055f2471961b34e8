import UnCLIPTensor

// RePaint (Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", CVPR 2022): an
// unconditional-inpainting sampler for any DDPM, no retraining. After every reverse step the known region of the
// sample is replaced by a forward-process sample q(x_{t−1} | x₀) of the given image, and every `jumpLength` steps the
// whole sample is re-noised back up `jumpLength` steps with q(x_t | x_{t−j}) and denoised again, `count` times in all,
// so the generated region has time to agree with the known one.

/// The region of a stage's sample that is known: the input image at the stage's resolution and where it holds.
public struct KnownRegion {
    /// x₀ [1 or B, C, H, W] in [−1, 1], the sample's shape but for the batch.
    public var image: Tensor
    /// [1 or B, 1, H, W]: 1 where the input is kept, 0 where it is repainted (a soft mask lies in between).
    public var weight: Tensor

    public init(image: Tensor, weight: Tensor) {
        precondition(image.rank == 4 && weight.rank == 4 && weight.shape[1] == 1
                     && Array(image.shape.suffix(2)) == Array(weight.shape.suffix(2)),
                     "KnownRegion: image \(image.shape) and weight \(weight.shape) do not pair up")
        self.image = image
        self.weight = weight
    }

    /// weight·known + (1 − weight)·x: the known region's sample pasted into `x`.
    public func merged(_ x: Tensor, known: Tensor) -> Tensor {
        known * weight + x * (1 - weight)
    }
}

/// RePaint's resampling plan over a sampler's steps: after every `jumpLength` steps (counted back from the last, so
/// the clean image is resampled too) the sample jumps back `jumpLength` steps, until each such stretch has been
/// denoised `count` times. `count` 1 is plain sampling with the known region replaced.
public struct ResamplingSchedule: Equatable, Sendable {
    /// j: steps per jump (RePaint: 10 of 250).
    public var jumpLength: Int
    /// r: times each stretch of j steps is denoised (RePaint: 10); r − 1 jumps back at each jump point.
    public var count: Int

    public init(jumpLength: Int, count: Int) {
        self.jumpLength = jumpLength
        self.count = count
    }

    /// No resampling.
    public static let none = ResamplingSchedule(jumpLength: 1, count: 1)

    /// One move of the walk.
    public enum Move: Equatable, Sendable {
        /// The sampler's step `index` (from the level before it to the level before `index + 1`).
        case step(Int)
        /// Re-noise from the level before step `from` back up to the level before step `to` (`to` < `from`).
        case jump(from: Int, to: Int)
    }

    /// The moves over `steps` of a sampler with `stepCount` steps, in order (RePaint's `get_schedule_jump`). A jump
    /// point is a level p = stepCount − m·j inside `steps` whose jump lands inside `steps`, never at the initial noise.
    public func moves(steps: Range<Int>, stepCount: Int) -> [Move] {
        let j = jumpLength
        var jumpsLeft: [Int: Int] = [:]
        if count > 1 && j >= 1 {
            var p = stepCount
            while p - j >= max(steps.lowerBound, 1) {
                if p <= steps.upperBound { jumpsLeft[p] = count - 1 }
                p -= j
            }
        }
        var moves: [Move] = []
        var p = steps.lowerBound
        while p < steps.upperBound {
            moves.append(.step(p))
            p += 1
            if let left = jumpsLeft[p], left > 0 {
                jumpsLeft[p] = left - 1
                moves.append(.jump(from: p, to: p - j))
                p -= j
            }
        }
        return moves
    }

    /// How many sampler steps the walk over `steps` takes.
    public func stepCount(steps: Range<Int>, of stepCount: Int) -> Int {
        moves(steps: steps, stepCount: stepCount).reduce(0) { if case .step = $1 { return $0 + 1 } else { return $0 } }
    }
}

extension DenoisingLoop where Sampler: ForwardProcessSampler {
    /// Inpainting with RePaint: steps `steps` (all by default) from `x`, each followed by the known region replaced
    /// with a sample of q(x | x₀) at the sample's new level (x₀ itself after the last step), with the jumps of
    /// `schedule`.
    ///
    /// The sampler's draws are the stage's as in `run` (one per step taken, so a resampled step draws afresh). The
    /// known region's noise is draw K of the stage's `.knownRegion` stream and each jump's of its `.jump` stream,
    /// numbered from 0 in the order taken. Progress counts the steps taken of all the walk's steps; a jump is traced
    /// as `<traceName>.jump.<from>.<to>`.
    public mutating func inpaint(from x: Tensor, steps: Range<Int>? = nil, known: KnownRegion,
                                 schedule: ResamplingSchedule = .none, noise: inout some NoiseSource,
                                 model: (Tensor, Int) throws -> Tensor) throws -> Tensor {
        let count = sampler.timesteps.count
        let range = steps ?? 0..<count
        let moves = schedule.moves(steps: range, stepCount: count)
        // Progress over the whole stage: this range's walk between the steps before and after it.
        let total = schedule.stepCount(steps: 0..<count, of: count)
        var done = schedule.stepCount(steps: 0..<range.lowerBound, of: count)
        var x = x
        for move in moves {
            switch move {
            case .step(let i):
                x = try step(i, from: x, noise: &noise, model: model)
                let level = i + 1
                let sample: Tensor
                if sampler.alphaBar(beforeStep: level) >= 1 {
                    sample = known.image
                } else {
                    let e = try auxiliaryNoise(.knownRegion, shape: x.shape, noise: &noise)
                    sample = sampler.noised(known.image, beforeStep: level, noise: e)
                }
                x = known.merged(x, known: sample)
                observer.emit("\(traceName).known.\(level)", x)
                done += 1
                try observer.report(stage, step: done, of: total)
            case .jump(let from, let to):
                let e = try auxiliaryNoise(.jump, shape: x.shape, noise: &noise)
                x = sampler.renoised(x, from: from, to: to, noise: e)
                observer.emit("\(traceName).jump.\(from).\(to)", x)
            }
        }
        return x
    }

    private mutating func auxiliaryNoise(_ stream: AuxiliaryNoise, shape: [Int], noise: inout some NoiseSource) throws -> Tensor {
        let index = nextAuxiliaryDraw[stream, default: 0]
        nextAuxiliaryDraw[stream] = index + 1
        return try noise.noise(stage: stage, auxiliary: stream, index: index, shape: shape)
    }
}
