import Foundation
import UnCLIPNN

/// Where a pipeline's Gaussian noise comes from: called with the stage, the index of the draw within that stage
/// (0 = the initial latent, then one per step with t > 0, the order diffusers draws them) and the shape.
public protocol NoiseSource {
    mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor
}

/// Seeded noise from the project's Philox generator: the same seed gives the same images on every machine.
///
/// Each stage draws from its own Philox stream, so changing the step count of one stage leaves the others' noise alone.
public struct SeededNoise: NoiseSource {
    public let seed: UInt64
    private var generators: [Stage: Philox] = [:]

    public init(seed: UInt64) { self.seed = seed }

    public mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        var g = generators[stage] ?? Philox(seed: seed, stream: stage.noiseStream)
        let t = Tensor.randn(shape, using: &g)
        generators[stage] = g
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
/// `super_res.K` (`Stage.key`). A missing draw or a shape mismatch is an error naming the tensor.
public struct RecordedNoise: NoiseSource {
    let file: SafeTensorsFile

    public init(contentsOf url: URL) throws { file = try SafeTensorsFile(contentsOf: url) }

    public func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        let name = "\(stage.key).\(index)"
        guard let info = file.info(name) else {
            throw NoiseReplayError(path: file.path, reason: "no tensor '\(name)' (the run needs draw \(index) of the \(stage) stage; check step counts and image counts)")
        }
        guard info.shape == shape else {
            throw NoiseReplayError(path: file.path, reason: "'\(name)' has shape \(info.shape), the run needs \(shape)")
        }
        return try file.tensor(name).clone()
    }
}
