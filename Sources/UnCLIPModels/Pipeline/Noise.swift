import Foundation
import UnCLIPNN

/// Where a pipeline's Gaussian noise comes from: called with the stage, the index of the draw within that stage
/// (0 = the initial latent, then one per step with t > 0, the order diffusers draws them) and the shape.
public protocol NoiseSource {
    mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor

    /// Draw `index` (from 0) of one of the stage's auxiliary streams: noise a run needs beside the sampler's own
    /// draws (inpainting's known region and resampling jumps), kept apart so that it never shifts them.
    mutating func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor
}

/// Auxiliary noise streams of a stage, beside its sampling draws (`DenoisingLoop.inpaint`).
public enum AuxiliaryNoise: String, Sendable, CaseIterable {
    /// The forward-process sample q(x_t | x₀) of the known region after each step (RePaint).
    case knownRegion = "known"
    /// The re-noising q(x_t | x_{t−j}) of each resampling jump (RePaint).
    case jump

    /// Added to the stage's Philox stream number by `SeededNoise` (far above every stage's own stream).
    var streamOffset: UInt64 {
        switch self {
        case .knownRegion: return 1 << 40
        case .jump: return 2 << 40
        }
    }
}

extension NoiseSource {
    /// Sources without auxiliary streams cannot run an edit: asking is an error that says so.
    public mutating func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor {
        throw PipelineArgumentError("\(Self.self) has no auxiliary noise streams: the \(stage) stage needs draw \(index) of its \(stream.rawValue) stream (inpainting); use SeededNoise or RecordedNoise")
    }
}

/// Seeded noise from the project's Philox generator: the same seed gives the same images on every machine.
///
/// Each stage draws from its own Philox stream, so changing the step count of one stage leaves the others' noise alone.
/// A stage's auxiliary streams (inpainting) are Philox streams of their own too: stream `stage + 2⁴⁰` for the known
/// region, `stage + 2·2⁴⁰` for resampling jumps, so an edit's sampling draws are those `generate` makes.
public struct SeededNoise: NoiseSource {
    public let seed: UInt64
    private var generators: [UInt64: Philox] = [:]

    public init(seed: UInt64) { self.seed = seed }

    public mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        draw(stream: stage.noiseStream, shape: shape)
    }

    public mutating func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor {
        draw(stream: stage.noiseStream + stream.streamOffset, shape: shape)
    }

    private mutating func draw(stream: UInt64, shape: [Int]) -> Tensor {
        var g = generators[stream] ?? Philox(seed: seed, stream: stream)
        let t = Tensor.randn(shape, using: &g)
        generators[stream] = g
        return t
    }
}

/// Why recorded noise could not be replayed.
public struct NoiseReplayError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Replays noise recorded from the reference pipeline: a safetensors file with tensors `prior.K`, `decoder.K`,
/// `super_res.K` (`Stage.key`), and for an edit the auxiliary streams `decoder.known.K`, `decoder.jump.K`, … . A
/// missing draw or a shape mismatch is an error naming the tensor.
public struct RecordedNoise: NoiseSource {
    let file: SafeTensorsFile

    public init(contentsOf url: URL) throws { file = try SafeTensorsFile(contentsOf: url) }

    public func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        try replay("\(stage.key).\(index)", shape: shape, need: "draw \(index) of the \(stage) stage")
    }

    public func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor {
        try replay("\(stage.key).\(stream.rawValue).\(index)", shape: shape,
                   need: "draw \(index) of the \(stage) stage's \(stream.rawValue) stream")
    }

    private func replay(_ name: String, shape: [Int], need: String) throws -> Tensor {
        guard let info = file.info(name) else {
            throw NoiseReplayError(path: file.path, reason: "no tensor '\(name)' (the run needs \(need); check step counts and image counts)")
        }
        guard info.shape == shape else {
            throw NoiseReplayError(path: file.path, reason: "'\(name)' has shape \(info.shape), the run needs \(shape)")
        }
        return try file.tensor(name).clone()
    }
}
